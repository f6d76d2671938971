"""The people's client of a node's user API: a profile on disk and ``NodeClient`` over httpx.

Analysts and duty officers reach their own node's user API over HTTPS, trusting the node's
self-signed certificate alone (``keys/PARTY.crt``, as ``curl --cacert``). Their bearer token
lives in a profile file only its owner may read (0600, in a 0700 directory), never on a command
line or in output. Every way a request can fail becomes one ``NodeError`` carrying what the
node said (RFC 9457: status, detail and, for an access denial, the reasons citing R1..R18), so
the command line prints one line and never a traceback.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import ssl
import stat
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from gsomia.core.errors import GsomiaError

# The user API's limits (``node/api/user.py`` ItemIn.payload_b64 and ``node/api/intake.py``): checked here
# before a byte is sent, so a file too large is refused in one line instead of after an upload.
PAYLOAD_B64_LIMIT = 16 << 20  # characters of base64 in one item
PROVIDE_BODY_LIMIT = 64 << 20  # bytes of one POST /items body
MAX_PAYLOAD = PAYLOAD_B64_LIMIT // 4 * 3  # bytes of a file whose base64 fits: 12 MiB
CHUNK = 256 << 10  # bytes per step of a progress bar

PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
LOGIN_AGAIN = "log in again: gsomia login --node URL"

Progress = Callable[[int], None]  # called with the bytes just done


class NodeError(GsomiaError):
    """A request the node refused, or one that never reached it.

    ``answered`` is the HTTP status (None when no answer came: connection, TLS, timeout);
    ``reasons`` the access decision's reasons (``[{rule, text}]``) of a 403."""

    def __init__(
        self, message: str, status: int | None = None, detail: str = "", reasons: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.answered = status
        self.detail = detail or message
        self.reasons = reasons or []

    @property
    def refused(self) -> bool:
        """An access decision said no: the line names the rule."""
        return self.answered == 403

    def line(self) -> str:
        """The one line the command line prints."""
        if self.refused:
            cited = "; ".join(f"{r.get('rule', '')}: {r.get('text', '')}" for r in self.reasons)
            return f"gsomia: refused: {cited or self.detail}"
        return f"gsomia: error: {self}"


# Profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    name: str
    node: str
    token: str = field(repr=False)  # never in a traceback or a log line
    cacert: str | None = None
    party: str | None = None


def profile_path() -> Path:
    """``$GSOMIA_HOME/profile.toml``, else ``$XDG_CONFIG_HOME/gsomia/profile.toml`` (``~/.config``)."""
    home = os.environ.get("GSOMIA_HOME")
    if home:
        return Path(home) / "profile.toml"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "gsomia" / "profile.toml"


def _check_name(name: str) -> str:
    if not PROFILE_NAME.fullmatch(name):
        raise NodeError(f"--profile: {name!r} is not a profile name (letters, digits, _ and -, at most 64)")
    return name


def _read_profiles(path: Path) -> dict[str, dict[str, Any]]:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise NodeError(f"{path}: cannot be read ({exc.strerror})") from None
    if mode & 0o077:
        raise NodeError(f"{path}: others may read it (mode {mode:04o}); chmod 600 it, or {LOGIN_AGAIN}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NodeError(f"{path}: not a profile file ({exc}); {LOGIN_AGAIN}") from None
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def load_profile(name: str) -> Profile:
    path = profile_path()
    entry = _read_profiles(path).get(_check_name(name))
    if entry is None:
        hint = "gsomia login --node URL" + ("" if name == "default" else f" --profile {name}")
        raise NodeError(f"not logged in{'' if name == 'default' else f' (profile {name})'}: {hint}")
    node, token = entry.get("node"), entry.get("token")
    if not isinstance(node, str) or not isinstance(token, str):
        raise NodeError(f"{path}: profile {name} lacks node or token; {LOGIN_AGAIN}")
    cacert, party = entry.get("cacert"), entry.get("party")
    return Profile(
        name, node, token, cacert if isinstance(cacert, str) else None, party if isinstance(party, str) else None
    )


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string (ASCII, escaped) is a TOML basic string


def _write_profiles(path: Path, profiles: dict[str, Any]) -> None:
    """Every profile in one file, replaced whole (0600: it holds tokens)."""
    from gsomia.store.files import atomic_output

    lines = ["# gsomia login: the node, token and certificate of each profile. Keep this file private."]
    for name, entry in profiles.items():
        lines.append(f"\n[{name}]")
        lines.extend(f"{key} = {_toml(str(value))}" for key, value in entry.items())
    with atomic_output(path, mode=0o600) as f:
        f.write(("\n".join(lines) + "\n").encode("utf-8"))


def save_profile(profile: Profile) -> Path:
    """Write ``profile`` beside the others: the file 0600, its directory 0700, replaced whole."""
    from gsomia.store.files import private_dir

    path = profile_path()
    profiles = _read_profiles(path)
    profiles[_check_name(profile.name)] = {
        k: v
        for k, v in {
            "node": profile.node,
            "token": profile.token,
            "cacert": profile.cacert,
            "party": profile.party,
        }.items()
        if v is not None
    }
    private_dir(path.parent)
    _write_profiles(path, profiles)
    return path


def remove_profile(name: str) -> bool:
    """Forget profile ``name``; the file goes with the last profile. Whether there was one."""
    path = profile_path()
    profiles = _read_profiles(path)
    if profiles.pop(_check_name(name), None) is None:
        return False
    if not profiles:
        path.unlink()
        return True
    _write_profiles(path, profiles)
    return True


# The client ---------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """The node's user API base URL. Plain HTTP only to this machine: a token sent in the clear
    across a network is a token given away (the node serves HTTP on loopback only, too)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise NodeError(f"--node: {url!r} is not a URL such as https://kor-node.example:8701")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise NodeError(f"--node: {url}: plain HTTP only to a node on this machine; use https:// and --cacert")
    if parts.query or parts.fragment:
        raise NodeError(f"--node: {url!r}: give the node's address alone (no query or fragment)")
    return url.strip().rstrip("/")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class NodeClient:
    """One node's user API for one user. Every failure is a ``NodeError``."""

    def __init__(self, node: str, token: str, cacert: str | None = None, timeout: float = 30.0) -> None:
        self.node = check_url(node)
        self.cacert = cacert
        verify: ssl.SSLContext | bool = True
        if cacert is not None:
            if not Path(cacert).is_file():
                raise NodeError(f"--cacert: {cacert}: no such certificate file")
            from gsomia.node.runtime import tls

            try:
                verify = tls.trust(Path(cacert))
            except ssl.SSLError:
                raise NodeError(f"--cacert: {cacert}: not a PEM certificate") from None
        self._timeout = timeout
        # The token goes to the node alone, and only on requests that need it (``_auth``): no
        # default header, and nothing from the environment (trust_env=False): an HTTP(S)_PROXY
        # would receive it, plain or by CONNECT to whatever the proxy says; .netrc would add
        # its own credentials; SSL_CERT_FILE would replace the node's pinned certificate.
        self._auth = {"Authorization": f"Bearer {token}"}
        self.http = httpx.Client(
            base_url=self.node,
            timeout=httpx.Timeout(timeout, connect=10.0),
            verify=verify,
            trust_env=False,
        )

    @classmethod
    def from_profile(cls, profile: Profile) -> NodeClient:
        return cls(profile.node, profile.token, profile.cacert)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # Errors ----------------------------------------------------------------------------

    def unreachable(self, exc: httpx.HTTPError) -> NodeError:
        """What a request that got no answer becomes: TLS, connection, timeout."""
        bad_tls = _tls_error(exc)
        if bad_tls is not None:
            reason = getattr(bad_tls, "verify_message", None) or getattr(bad_tls, "reason", None) or str(bad_tls)
            trusted = f"the certificate in {self.cacert}" if self.cacert else "the system's CAs (give --cacert)"
            return NodeError(f"TLS: {self.node} is not the node {trusted} vouches for ({reason})")
        if isinstance(exc, httpx.TimeoutException):
            return NodeError(f"{self.node}: no answer within {self._timeout:g} s ({type(exc).__name__})")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return NodeError(f"cannot reach {self.node}: {reason}")

    def problem(self, response: httpx.Response) -> NodeError:
        """A node's answer other than 2xx, from its problem document."""
        status = response.status_code
        try:
            body = json.loads(response.read())
        except (ValueError, httpx.HTTPError):
            body = None
        doc: dict[str, Any] = body if isinstance(body, dict) else {}
        detail = str(doc.get("detail") or doc.get("title") or response.reason_phrase or f"HTTP {status}")
        raw = doc.get("reasons")
        reasons = [
            {"rule": str(r.get("rule", "")), "text": str(r.get("text", ""))}
            for r in (raw if isinstance(raw, list) else [])
            if isinstance(r, dict)
        ]
        if status == 401:
            return NodeError(f"the node does not accept this token ({detail}): {LOGIN_AGAIN}", status, detail)
        if status == 403:
            return NodeError(detail, status, detail, reasons)
        return NodeError(detail.replace("\n", " "), status, detail)

    def _request(self, method: str, path: str, token: bool = True, **kwargs: Any) -> Any:
        if token:
            kwargs["headers"] = {**self._auth, **kwargs.get("headers", {})}
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        if not response.is_success:
            raise self.problem(response)
        try:
            return response.json()
        except ValueError:
            raise NodeError(f"{self.node}{path}: the answer is not JSON; is this a gsomia node?") from None

    # The API ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return dict(self._request("GET", "/health", token=False))  # open to anyone: no token

    def status(self) -> dict[str, Any]:
        return dict(self._request("GET", "/status"))

    def share(
        self,
        payload: bytes,
        to: str,
        classification: str,
        purposes: list[str],
        compartments: list[str],
        releasable_to: list[str],
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """POST /items with one item; its answer's ``{item_id, to, classification}``."""
        item: dict[str, Any] = {"to": to, "classification": classification, "purposes": purposes}
        if compartments:
            item["compartments"] = compartments
        if releasable_to:
            item["releasable_to"] = releasable_to
        item["payload_b64"] = base64.b64encode(payload).decode("ascii")
        body = json.dumps({"items": [item]}, ensure_ascii=False).encode("utf-8")
        if len(body) > PROVIDE_BODY_LIMIT:
            raise NodeError(f"the request would be {len(body)} bytes; the node takes at most {PROVIDE_BODY_LIMIT}")

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(body), CHUNK):
                piece = body[start : start + CHUNK]
                yield piece
                if progress:
                    progress(len(piece))

        headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        answer = self._request("POST", "/items", content=chunks() if progress else body, headers=headers)
        return dict(answer["items"][0])

    def items(self, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Every item the user may know of, in order, page by page (GET /items)."""
        after = 0
        while True:
            answer = self._request("GET", "/items", params={"after": after, "limit": page})
            rows = answer.get("items", [])
            yield from rows
            if len(rows) < page or answer.get("next", after) == after:
                return
            after = int(answer["next"])

    def read(
        self, item_id: str, purpose: str | None = None, progress: Callable[[int, int | None], None] | None = None
    ) -> dict[str, Any]:
        """GET /items/{id}: the decision, label, marking and payload (``payload`` as bytes).

        ``progress`` is called with the bytes received so far and the total (if known)."""
        params = {"purpose": purpose} if purpose else None
        path = f"/items/{item_id}"
        try:
            with self.http.stream("GET", path, params=params, headers=self._auth) as response:
                if not response.is_success:
                    raise self.problem(response)
                total = int(response.headers.get("content-length", "0")) or None
                got = bytearray()
                for piece in response.iter_bytes(CHUNK):
                    got += piece
                    if progress:
                        progress(len(got), total)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
        try:
            answer = json.loads(got)
            payload = base64.b64decode(answer.pop("payload_b64"), validate=True)
        except (ValueError, KeyError, TypeError):
            raise NodeError(f"{self.node}{path}: the answer is not an item; is this a gsomia node?") from None
        return {**answer, "payload": payload}

    def flash(
        self, text: str, to: str, classification: str, purposes: list[str], compartments: list[str]
    ) -> dict[str, Any]:
        """POST /alerts: a flash report (R17); the answer's ``{item_id, to, classification}``."""
        body = {
            "to": to,
            "classification": classification,
            "text": text,
            "purposes": purposes,
            "compartments": compartments,
        }
        return dict(self._request("POST", "/alerts", json=body)["alert"])

    def stream(self, last_event_id: str | None, on_open: Callable[[], None]) -> Iterator[tuple[str, dict[str, Any]]]:
        """GET /alerts/stream: (event id, report) as each arrives, until the connection ends.

        Raises ``NodeError`` (no answer, or a refusal); a connection that drops mid-stream
        raises it too, with ``status`` None: the caller resumes from the last id it saw."""
        headers = {**self._auth, **({"Last-Event-ID": last_event_id} if last_event_id else {})}
        # The node sends a comment every 15 s: a minute of silence is a dead connection.
        timeout = httpx.Timeout(60.0, connect=10.0)
        try:
            with self.http.stream("GET", "/alerts/stream", headers=headers, timeout=timeout) as response:
                if not response.is_success:
                    raise self.problem(response)
                on_open()
                event_id, kind = "", "message"
                data: list[str] = []
                for line in response.iter_lines():
                    if not line:
                        if data and kind == "flash":
                            try:
                                report = json.loads("\n".join(data))
                            except ValueError:
                                report = None
                            if isinstance(report, dict):
                                yield event_id, report
                        kind, data = "message", []
                        continue
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "id":
                        event_id = value
                    elif name == "event":
                        kind = value
                    elif name == "data":
                        data.append(value)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from None
