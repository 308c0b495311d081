#!/usr/bin/env python3
"""Check her-studio's dataset exports load with Hugging Face `datasets` in the
shape TRL (DPO, KTO, SFT) and HER-RM training expect.

    python check_datasets.py DIR [--allow-empty]

DIR holds dpo.jsonl, kto.jsonl, sft.jsonl and her_rm.jsonl. Exits 0 when all
match, 1 with one line per problem otherwise, 2 on bad usage.
"""

import argparse
import sys
from pathlib import Path

ROLES = {"system", "user", "assistant"}
PLAN = "<system_thinking>"

# file -> (columns, message-list columns)
EXPECTED = {
    "dpo.jsonl": (["prompt", "chosen", "rejected"], ["prompt", "chosen", "rejected"]),
    "kto.jsonl": (["prompt", "completion", "label"], ["prompt", "completion"]),
    "sft.jsonl": (["messages"], ["messages"]),
    "her_rm.jsonl": (["context", "cand_1", "cand_2", "better_response"], []),
}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, file, msg, row=None):
        where = file if row is None else f"{file} row {row}"
        self.items.append(f"{where}: {msg}")


def message_feature_ok(feature):
    """The column's feature is a list of {role, content} structs (datasets
    has spelled this as [dict], Sequence(dict) and List(dict) over versions)."""
    inner = feature[0] if isinstance(feature, list) else getattr(feature, "feature", None)
    if inner is None:
        return False
    return isinstance(inner, dict) and set(inner) == {"role", "content"}


def check_messages(problems, file, row, col, value, last_role=None, single=False):
    if not isinstance(value, list) or not value:
        problems.add(file, f"{col!r} must be a non-empty list of messages, got {value!r:.80}", row)
        return
    if single and len(value) != 1:
        problems.add(file, f"{col!r} must hold exactly one message, got {len(value)}", row)
    for i, m in enumerate(value):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            keys = sorted(m) if isinstance(m, dict) else type(m).__name__
            problems.add(file, f"{col}[{i}] must have keys ['content', 'role'], got {keys}", row)
            continue
        if m["role"] not in ROLES:
            problems.add(file, f"{col}[{i}].role {m['role']!r} is not one of {sorted(ROLES)}", row)
        if not isinstance(m["content"], str):
            problems.add(file, f"{col}[{i}].content must be a string", row)
    if last_role and isinstance(value[-1], dict) and value[-1].get("role") != last_role:
        problems.add(file, f"the last message of {col!r} must be {last_role!r}", row)


def check_file(problems, folder, name, allow_empty):
    from datasets import load_dataset

    path = folder / name
    columns, message_cols = EXPECTED[name]
    if not path.is_file():
        problems.add(name, f"missing (looked for {path})")
        return None
    if path.stat().st_size == 0:
        if not allow_empty:
            problems.add(name, "is empty (pass --allow-empty to accept)")
        return 0
    try:
        ds = load_dataset("json", data_files=str(path), split="train")
    except Exception as e:  # noqa: BLE001 - report any loader failure as a mismatch
        problems.add(name, f"datasets cannot load it: {type(e).__name__}: {e}")
        return None

    got = list(ds.column_names)
    if sorted(got) != sorted(columns):
        problems.add(name, f"columns {got} != expected {columns}")
        return None
    for col in message_cols:
        if not message_feature_ok(ds.features[col]):
            problems.add(name, f"feature of {col!r} is {ds.features[col]}, expected a list of {{role, content}}")

    for row, ex in enumerate(ds):
        if name == "dpo.jsonl":
            check_messages(problems, name, row, "prompt", ex["prompt"])
            check_messages(problems, name, row, "chosen", ex["chosen"], "assistant", single=True)
            check_messages(problems, name, row, "rejected", ex["rejected"], "assistant", single=True)
            if ex["chosen"] == ex["rejected"]:
                problems.add(name, "chosen and rejected are identical", row)
        elif name == "kto.jsonl":
            check_messages(problems, name, row, "prompt", ex["prompt"])
            check_messages(problems, name, row, "completion", ex["completion"], "assistant", single=True)
            if not isinstance(ex["label"], bool):
                problems.add(name, f"label must be a bool, got {ex['label']!r}", row)
        elif name == "sft.jsonl":
            msgs = ex["messages"]
            check_messages(problems, name, row, "messages", msgs, "assistant")
            # HER layout: only the final assistant turn (the one in the loss) keeps its plan.
            for i, m in enumerate(msgs[:-1]):
                if isinstance(m, dict) and m.get("role") == "assistant" and PLAN in str(m.get("content")):
                    problems.add(name, f"messages[{i}] is an earlier assistant turn that still has {PLAN}", row)
        else:
            for col in ("context", "cand_1", "cand_2"):
                if not isinstance(ex[col], str) or not ex[col]:
                    problems.add(name, f"{col!r} must be a non-empty string", row)
                elif col != "context" and PLAN in ex[col]:
                    problems.add(name, f"{col!r} still has {PLAN} (HER-RM never sees plans)", row)
            if ex["better_response"] not in ("cand_1", "cand_2", "tie"):
                problems.add(name, f"better_response {ex['better_response']!r} is not cand_1, cand_2 or tie", row)
    return ds.num_rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--allow-empty", action="store_true", help="accept empty files")
    args = ap.parse_args()
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    try:
        import datasets
    except ImportError:
        print("error: the `datasets` package is not installed (pip install datasets)", file=sys.stderr)
        return 2

    problems = Problems()
    for name in EXPECTED:
        before = len(problems.items)
        rows = check_file(problems, args.folder, name, args.allow_empty)
        if len(problems.items) == before and rows is not None:
            print(f"ok  {name}: {rows} rows, columns {EXPECTED[name][0]}")
    if problems.items:
        for p in problems.items:
            print(f"MISMATCH {p}", file=sys.stderr)
        print(f"{len(problems.items)} problem(s) (datasets {datasets.__version__})", file=sys.stderr)
        return 1
    print(f"all 4 files match (datasets {datasets.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
