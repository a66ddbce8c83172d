"""The file store's indexes of a data dir written before they existed (index/runs for run
ids that do not name their session, index/active for runs that never ended): built once,
in one pass, whatever the number of journals."""

import os
import subprocess
import sys
from pathlib import Path

from hermes_web.core.codec import encode_record
from hermes_web.core.ids import new_run_id, new_session_id
from hermes_web.store.datadir import DataDir

ROOT = Path(__file__).resolve().parent.parent
OPEN_FILE_LIMIT = 64

# Opens the store with an open-file limit far below the number of journals.
INDEX_IN_A_SMALL_PROCESS = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({OPEN_FILE_LIMIT}, {OPEN_FILE_LIMIT}))
from hermes_web.store.files.logs import FileLogStore
from hermes_web.store.durability import Durability
from hermes_web.store.datadir import DataDir
store = FileLogStore(DataDir(sys.argv[1]).create(), Durability("terminal")).open_index()
for session_id, run_id in sorted(store.unfinished()):
    print("unfinished", session_id, run_id)
"""


def journal(session_id: str, run_id: str, finished: bool) -> bytes:
    records = [{"type": "run.started", "ts": 1.0, "run_id": run_id, "session_id": session_id,
                "user": {"id": f"{run_id}-user", "text": "hi", "attachments": []},
                "agent": {"name": "demo", "model": "demo"}},
               {"type": "text.delta", "ts": 1.1, "text": "hello"}]
    if finished:
        records.append({"type": "run.completed", "ts": 1.2})
    return b"".join(encode_record(record) for record in records)


def test_an_older_data_dir_with_more_journals_than_open_files_is_indexed(tmp_path):
    data_dir = DataDir(tmp_path / "var").create()
    unfinished = []
    for session_index in range(4):
        session_id = new_session_id()
        directory = data_dir.journals_root / session_id
        directory.mkdir(mode=0o700)
        for index in range(60):
            run_id = new_run_id(session_id)
            finished = index != 30
            (directory / f"{run_id}.jsonl").write_bytes(journal(session_id, run_id, finished))
            if not finished:
                unfinished.append(f"unfinished {session_id} {run_id}")
    result = subprocess.run([sys.executable, "-c", INDEX_IN_A_SMALL_PROCESS, str(data_dir.root)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == sorted(unfinished)
    assert (data_dir.root / "index" / "VERSION").exists()
    assert sorted(os.listdir(data_dir.root / "index" / "active")) == sorted(line.split()[2] for line in unfinished)
