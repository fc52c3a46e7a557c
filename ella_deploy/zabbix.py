"""The debug checklist's "Are there any Zabbix related warnings?": the active problems of
ELLA's hosts and database host, asked of Zabbix's API (JSON-RPC 2.0, api_jsonrpc.php).

Standard library only: the check playbook's action plugin
(ansible/plugins/action/ella_zabbix_problems.py) loads this file by path and runs it on the
controller, so a plain ansible-playbook or AWX run asks Zabbix exactly as the CLI does. The
API token reaches this code as an argument and leaves it only in the request (never in a
result, an error message or a log line). `ella_deploy/check.py` judges what `measure`
returns.

Authentication: Zabbix 6.0 takes an API token in the request's `auth` field; 6.4 and later
take `Authorization: Bearer` (7.2 refuses the `auth` field). `apiinfo.version`, which must
be called without either, decides.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# problem.severity: 0..5.
SEVERITIES = ("Not classified", "Information", "Warning", "Average", "High", "Disaster")
# Replies that mean the token was not accepted (6.0: "Not authorised.", later "Not authorized.").
REFUSED = ("not authorised", "not authorized", "session terminated", "api token expired", "re-login")


class ZabbixError(Exception):
    """Zabbix could not be asked, or refused; the message names neither token nor request
    (nor the URL, which the result carries beside it)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def api_url(url: str) -> str:
    """The API endpoint of a frontend URL (https://zabbix.example/zabbix) or of the endpoint itself."""
    url = url.strip().rstrip("/")
    return url if url.endswith("/api_jsonrpc.php") else url + "/api_jsonrpc.php"


def shown_url(url: str) -> str:
    """The URL as it may be shown: without credentials, query or fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname + (f":{parts.port}" if parts.port else "")
                       if parts.hostname else parts.netloc, parts.path, "", ""))


class Client:
    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = api_url(url)
        self._token = token
        self.timeout = timeout
        self._ids = 0
        self.version = ""

    def _post(self, method: str, params: Any, auth: str = "", bearer: bool = False) -> Any:
        self._ids += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params, "id": self._ids}
        if auth:
            body["auth"] = auth
        headers = {"Content-Type": "application/json-rpc", "Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                text = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            raise ZabbixError(f"Zabbix answered HTTP {error.code} {error.reason}",
                              refused=error.code in (401, 403)) from None
        except urllib.error.URLError as error:
            raise ZabbixError(f"Zabbix unreachable: {error.reason}") from None
        except (TimeoutError, OSError) as error:
            raise ZabbixError(f"Zabbix unreachable: {error.__class__.__name__}: {error}") from None
        try:
            reply = json.loads(text)
        except ValueError:
            raise ZabbixError("no Zabbix API there (the answer is not JSON)") from None
        if not isinstance(reply, dict):
            raise ZabbixError("no Zabbix API there (an unexpected answer)")
        if "error" in reply:
            error = reply["error"] if isinstance(reply["error"], dict) else {}
            text = " ".join(str(error.get(key) or "") for key in ("message", "data")).strip()
            refused = any(word in text.lower() for word in REFUSED)
            raise ZabbixError(f"Zabbix refused the API token ({text})" if refused
                              else f"Zabbix's API: {method}: {text or 'error'}", refused=refused)
        return reply.get("result")

    def call(self, method: str, params: Any) -> Any:
        if not self.version:
            self.version = str(self._post("apiinfo.version", {}))
        major_minor = tuple(int(part) for part in self.version.split(".")[:2] if part.isdigit())
        if major_minor >= (6, 4):
            return self._post(method, params, bearer=True)
        return self._post(method, params, auth=self._token)


def problems(client: Client, hosts: Sequence[str]) -> dict[str, Any]:
    """The hosts as Zabbix knows them (by technical name, else visible name) and the active
    problems of their triggers, newest first."""
    fields = ["hostid", "host", "name", "status", "maintenance_status"]
    found = client.call("host.get", {"output": fields, "filter": {"host": list(hosts)}}) or []
    missing = [name for name in hosts if name not in {h["host"] for h in found}]
    if missing:
        found += client.call("host.get", {"output": fields, "filter": {"name": missing}}) or []
    by_id: dict[str, str] = {}
    known: dict[str, dict[str, Any]] = {}
    for name in hosts:
        match = next((h for h in found if name in (h.get("host"), h.get("name"))), None)
        known[name] = {"found": match is not None}
        if match is not None:
            by_id[str(match["hostid"])] = name
            known[name].update({"zabbix_host": match.get("host"), "monitored": str(match.get("status")) == "0",
                                "maintenance": str(match.get("maintenance_status")) == "1"})
    listed: list[dict[str, Any]] = []
    if by_id:
        active = client.call("problem.get", {
            "output": ["eventid", "objectid", "clock", "name", "severity", "acknowledged", "suppressed"],
            "hostids": list(by_id), "source": 0, "object": 0, "recent": False,
            "sortfield": ["eventid"], "sortorder": "DESC"}) or []
        triggers = client.call("trigger.get", {
            "output": ["triggerid"], "triggerids": sorted({str(p["objectid"]) for p in active}),
            "selectHosts": ["hostid"]}) if active else []
        hosts_of = {str(t["triggerid"]): [str(h["hostid"]) for h in t.get("hosts") or []] for t in triggers or []}
        for problem in active:
            for hostid in hosts_of.get(str(problem["objectid"]), []):
                if hostid in by_id:
                    listed.append({"host": by_id[hostid], "name": str(problem.get("name") or ""),
                                   "severity": int(problem.get("severity") or 0),
                                   "since": int(problem.get("clock") or 0),
                                   "acknowledged": str(problem.get("acknowledged")) == "1",
                                   "suppressed": str(problem.get("suppressed")) == "1",
                                   "eventid": str(problem.get("eventid"))})
    return {"hosts": known, "problems": listed}


def measure(url: str, token: str, hosts: Sequence[str], timeout: float = 10.0,
            severity: Sequence[Any] = (2, 4)) -> dict[str, Any]:
    """What check.py judges; never raises. Not configured (no URL or no token): said so.
    Unreachable, refused or malformed: the reason in `error`."""
    if not (url or "").strip() or not (token or "").strip():
        return {"configured": False}
    shown = shown_url(api_url(url))
    result: dict[str, Any] = {"configured": True, "url": shown, "severity": list(severity),
                              "requested_hosts": list(hosts)}
    client = Client(url, token.strip(), timeout)
    try:
        result.update(problems(client, hosts))
        result["version"] = client.version
    except ZabbixError as error:
        result.update({"error": str(error), "refused": error.refused})
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        result.update({"error": f"no Zabbix API there (an unexpected answer: {error.__class__.__name__})",
                       "refused": False})
    return result
