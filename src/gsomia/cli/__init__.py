"""The command line: the security authority's, the analysts' and the auditors' commands."""
