"""Pool the step-clock self-checks (same code, same machine, consecutive device calls) and judge them with
the committed code: PYTHONPATH=src python reports/gpu/2026-12-02-h200-trust/selfcheck/pool.py FOLDER..."""
import json
import sys

from diffbench.run.selfcheck import compare_rounds

for backend in ("eager", "compile"):
    runs = [json.load(open(f"{folder}/selfcheck-{backend}.json")) for folder in sys.argv[1:]]
    pooled = {key: sum((run["rounds_s"][key] for run in runs), []) for key in ("bare", "suite")}
    bare_steps = sum((run["rounds_ms_per_step"]["bare"] for run in runs), [])
    result = compare_rounds(pooled["bare"], bare_steps, pooled["suite"], sum((run["suite_its"] for run in runs), []), 2.0)
    print(f"{backend}: {len(pooled['bare'])} rounds; E2E overhead {result['e2e_overhead_pct']:+.2f}% "
          f"[{result['e2e_overhead_interval_pct'][0]:+.2f}, {result['e2e_overhead_interval_pct'][1]:+.2f}]; per step "
          f"{result['step_overhead_pct']:+.2f}% [{result['step_overhead_interval_pct'][0]:+.2f}, "
          f"{result['step_overhead_interval_pct'][1]:+.2f}]; fastest rounds: E2E "
          f"{(min(pooled['suite']) / min(pooled['bare']) - 1) * 100:+.2f}%, per step "
          f"{(min(1000 / i for i in sum((run['suite_its'] for run in runs), [])) / min(bare_steps) - 1) * 100:+.2f}%; "
          f"verdict at +-2%: {result['verdict']}")
