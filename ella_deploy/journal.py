"""The release journal (deploy/journal.json, written on the host by the ella_release_window
module at every step): what it says about a release, and what `recover` does about it.

Pure standard-library Python: the playbooks load this file through
ansible/plugins/filter/ella.py, so the CLI and Ansible read a journal identically.
"""

from __future__ import annotations

from typing import Any

# Phases the window module writes, in order. `live` is the line: from then on nothing
# restores data.
OPEN_PHASES = ("window", "window_done", "starting", "cancelled", "rolled_back", "rolled_back_running",
               "rollback_failed", "live")
# Steps after which the live database may differ from the rollback point.
WRITING_STEPS = ("migrate", "fixtures", "start")


def summary(journal: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of a journal an operator needs: which release, how far, what is open."""
    if not journal:
        return None
    return {
        "id": journal.get("id"),
        "version": journal.get("version"),
        "previous_version": journal.get("previous_version"),
        "host": journal.get("host"),
        "phase": journal.get("phase"),
        "outcome": journal.get("outcome"),
        "open": journal.get("phase") in OPEN_PHASES,
        "steps": [{"step": s.get("step"), "state": s.get("state")} | ({"error": s["error"]} if s.get("error") else {})
                  for s in journal.get("steps", [])],
        "rollback_database": (journal.get("rollback_point") or {}).get("database"),
        "started": journal.get("started"),
        "updated": journal.get("updated"),
    }


def is_open(journal: dict[str, Any] | None) -> bool:
    return bool(journal) and journal.get("phase") in OPEN_PHASES


def release_steps(marks: list[dict[str, Any]], journal: dict[str, Any] | None, finished: float) -> list[dict[str, Any]]:
    """The release's steps with their times: the journal's (exact, measured on the host) and
    the playbook's marks (each lasting until the next step starts)."""
    starts = [{"name": m["step"], "start": float(m["at"]), "end": None} for m in marks or []]
    for step in (journal or {}).get("steps", []):
        starts.append({"name": step["step"], "start": float(step["started"]),
                       "end": float(step["finished"]) if step.get("finished") else None,
                       "state": step.get("state")})
    starts.sort(key=lambda s: s["start"])
    steps = []
    for index, step in enumerate(starts):
        following = starts[index + 1]["start"] if index + 1 < len(starts) else float(finished)
        end = step["end"] if step["end"] is not None else following
        entry = {"name": step["name"], "start": round(step["start"], 3), "end": round(end, 3),
                 "seconds": round(end - step["start"], 3)}
        if step.get("state") and step["state"] != "done":
            entry["state"] = step["state"]
        steps.append(entry)
    return steps


def downtime_seconds(steps: list[dict[str, Any]], finished: float | None = None) -> float | None:
    """From ELLA's stop until it served again (the new version, or the previous one after a
    rollback); until `finished` when it never did; None when it was never stopped."""
    stop = next((s for s in steps if s["name"] == "stop"), None)
    if stop is None:
        return None
    # "start" (measured on the host) ends when ELLA serves; "served" and "rollback_done" are
    # marks set right after it served.
    served = [s["end"] if s["name"] == "start" else s["start"] for s in steps
              if s["name"] in ("start", "served", "rollback_done") and s.get("state") is None]
    if served:
        return round(served[-1] - stop["start"], 3)
    return round(float(finished) - stop["start"], 3) if finished is not None else None


def recovery(journal: dict[str, Any] | None, serving: bool, served: dict[str, Any] | None = None,
             keep_new: str = "") -> dict[str, str]:
    """What `recover` does with a journal, once no step of the interrupted run acts on it any
    more. `serving`: the new version serves on the journal's host now (the health gate passes:
    ELLA's programs running, its API answering, from the new image). `served`: what ELLA's own
    tables say the live database served since the window (ella_pg's served_since), whoever
    started it and wherever. `keep_new`: the operator's reason to keep the new version.

    - no journal, or a closed one: nothing to recover;
    - the new version went live (the gate passed), serves now, or the database shows that it
      served users (a start by hand after the interruption): finish forward, never restore;
    - the operator keeps the new version: finish forward, when it is in place (the switch and
      any migration done) and no rollback was done yet; refused otherwise;
    - otherwise (the window or its start was interrupted, or the start never passed the gate:
      no user was served): roll back, then start the previous version after the guard.
    """
    if not is_open(journal):
        return {"action": "none", "why": "no release is open"}
    journal = journal or {}
    phase = journal.get("phase")
    version = journal.get("version")
    if phase in ("rolled_back", "rolled_back_running"):
        if keep_new:
            return {"action": "refuse", "why": f"recover --keep-new refused: the rollback of {version} was done "
                                               f"already (phase {phase}); run `ella-deploy recover` to finish it"}
        return {"action": "finish_rollback", "why": f"the rollback of {version} was done "
                                                     f"(phase {phase}): start the previous version if it is "
                                                     "not running, then close the release"}
    finish = "finish the release; nothing is restored over users' writes"
    if phase == "live" or serving:
        return {"action": "finish", "why": f"{version} " + ("went live" if phase == "live" else "serves now")
                                           + f" (phase {phase}): {finish}"}
    if served and served.get("served"):
        return {"action": "finish", "why": f"{version} served users after the window (phase {phase}; ELLA's "
                                           f"own log: {served.get('summary') or 'requests since the window'}): "
                                           f"{finish}"}
    if keep_new:
        states = {s.get("step"): s.get("state") for s in journal.get("steps") or []}
        needed = ["switch"] + [step for step in ("migrate", "fixtures") if journal.get(step)]
        missing = [f"{step} {states.get(step) or 'not reached'}" for step in needed if states.get(step) != "done"]
        if missing:
            return {"action": "refuse", "why": f"recover --keep-new refused: {version} is not in place "
                                               f"({', '.join(missing)}); `ella-deploy recover` rolls it back"}
        return {"action": "finish", "why": f"{version} kept by the operator ({keep_new}; phase {phase}): {finish}"}
    return {"action": "rollback", "why": f"{version} never served (phase {phase}, "
                                         f"last step {last_step(journal)}): roll back to "
                                         f"{journal.get('previous_version') or 'no version'}"}


def last_step(journal: dict[str, Any]) -> str:
    steps = journal.get("steps") or []
    if not steps:
        return "none"
    step = steps[-1]
    return f"{step.get('step')} ({step.get('state')})"
