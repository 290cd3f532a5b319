"""Judge committed selfcheck rounds with the code of commit 14f3aa3 (`git show 14f3aa3:src/diffbench/selfcheck.py`; later selfchecks time per step differently): python judge.py FOLDER"""
import json, sys
from diffbench.run.selfcheck import compare_rounds, render
folder = sys.argv[1]
texts = []
for name in ("selfcheck-eager.json", "selfcheck-compile.json"):
    r = json.load(open(f"{folder}/{name}")); s = r["rounds_s"]
    texts.append(render({**r, **compare_rounds(s["bare"], s["bare_double_steps"], s["suite"], r["suite_its"], r["steps"], 2.0)}))
print("\n\n".join(texts))
