"""The run folder's reservation journal of a shared allowance (`reservations.jsonl`).

What a process wrote to the journal about its shared reservations, read back by the next
run on the folder (`copydesk.allowance.SharedBudget.recover`), which settles what a killed
process left open. The journal is a file in the run folder, not proof: the reader checks
every line (see `ReservationJournal`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from copydesk import boundedjson
from copydesk.private import open_private


#: Journal states, in the order one reservation goes through them.
OPEN, TAKEN, REFUSED, SETTLE, SETTLED, UNKNOWN = "open", "taken", "refused", "settle", "settled", "unknown"
STATES = frozenset({OPEN, TAKEN, REFUSED, SETTLE, SETTLED, UNKNOWN})


@dataclass
class JournalEntry:
    """One reservation as the journal recorded it: its counter, tokens, and states in order."""

    rid: str
    key: str
    tokens: int
    states: list[str]
    #: The journal's line (1-based) that opened it.
    line: int = 0

    @property
    def left_open(self) -> bool:
        """Its increment surely reached the store and no settlement was started: safe to settle."""
        return TAKEN in self.states and not {SETTLE, UNKNOWN} & set(self.states)

    @property
    def ambiguous(self) -> bool:
        """Interrupted where the journal cannot tell what the store holds (see `ReservationJournal`)."""
        if UNKNOWN in self.states or REFUSED in self.states:
            return False
        if SETTLE in self.states:
            return SETTLED not in self.states
        return TAKEN not in self.states


class ReservationJournal:
    """The run folder's record of its shared reservations (`reservations.jsonl`), one JSON line
    per step, appended and flushed before the step's request goes to the store, so a process
    killed with SIGKILL loses none of them:

        {"id", "key", "tokens", "state": "open"}   before the increment is sent
        {"id", "state": "taken"}                    after the store counted it
        {"id", "state": "refused"}                  the acquire gave up; nothing is counted
        {"id", "state": "settle", "charged": N}     before the settlement is sent (also fsynced:
                                                    losing it to a power cut could replay a settlement)
        {"id", "state": "settled"}                  after the store took the settlement
        {"id", "state": "unknown"}                  recovery reported it as ambiguous (once)

    What `SharedBudget.recover` does with a reservation the last process left behind:

    - `taken`, no `settle`: the store counts it as reserved and nobody will settle it. It is
      settled in full (the API may have billed the call): the reservation becomes spent.
    - `open` only: the process died while the increment was in flight. The store may or may
      not hold it, and its counters cannot say which. It is left alone: if it did land, it
      stays counted as reserved (used) until `copydesk budget reset` or the period's end. That
      errs on the safe side: settling one that never landed would count as spent tokens that
      were never in `used` (and hide other runs' real reservations from `reserved`).
    - `settle` without `settled`: the settlement (two requests on the Prefect store) may be
      half done. Replaying it could give back the unused part twice, room another run holds,
      and so overshoot the allowance: it is left alone, as above.

    Ambiguous ones are logged once (an `unknown` line marks them reported).

    The file is not trusted: whoever can write the run folder can write it. Recovery settles a
    line only when it names the recovering run's own allowance (its name, timezone and period,
    not a later period than now) and a whole number of tokens between 0 and what that counter
    still holds reserved, less what earlier lines of the file claimed (a reservation left open
    is part of `reserved`, so nothing more can be owed). Every other line is refused and logged
    as a warning naming the file and the line; a line that is not a journal record at all (a
    line cut by a kill, text written by hand) is skipped with the same warning.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def load(self, problems: list[tuple[int, str]] | None = None) -> list[JournalEntry]:
        """Every reservation recorded, in order. Lines that are not a journal record (a line cut by
        a kill; anything written by hand) are skipped, and listed in `problems` (line, why)."""
        entries: dict[str, JournalEntry] = {}
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        for number, line in enumerate(raw.splitlines(), start=1):
            why = self._read_line(line, number, entries)
            if why is not None and problems is not None:
                problems.append((number, why))
        return list(entries.values())

    @staticmethod
    def _read_line(line: bytes, number: int, entries: dict[str, JournalEntry]) -> str | None:
        """Take one line into `entries`; why it was not taken, or None."""
        if not line.strip():
            return None
        try:
            row = boundedjson.loads(line.decode("utf-8"))  # too deep: refused like any unreadable line
        except (ValueError, RecursionError):
            return "not a JSON record (a line cut by a kill?)"
        if not isinstance(row, dict) or not isinstance(row.get("id"), str) or row.get("state") not in STATES:
            return "not a reservation record (an id and a known state)"
        rid, state = row["id"], row["state"]
        if state == OPEN:
            tokens = row.get("tokens")
            if not isinstance(row.get("key"), str) or type(tokens) is not int:
                return "an opened reservation without a counter name and a whole number of tokens"
            if rid in entries:
                return f"reservation {rid[:32]!r} opened a second time"
            entries[rid] = JournalEntry(rid, row["key"], tokens, [OPEN], number)
        elif rid in entries:
            entries[rid].states.append(state)
        else:
            return f"a {state!r} record of a reservation never opened"
        return None

    def write(self, record: dict[str, Any], *, durable: bool = False) -> None:
        """Append one line and flush it to the operating system (and to the disk when `durable`)."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cut = False
            try:
                with self.path.open("rb") as old:
                    old.seek(0, os.SEEK_END)
                    if old.tell():
                        old.seek(-1, os.SEEK_END)
                        cut = old.read(1) != b"\n"
            except FileNotFoundError:
                pass
            self._file = open_private(self.path, "a")  # 0600, as the call store
            if cut:  # end a line cut short by a kill, so this record starts a line of its own
                self._file.write("\n")
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
