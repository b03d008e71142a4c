"""An experiment's verdicts as the tests read them: ``verdicts(ctx)`` = {check name: passed} from the
``verdict.json`` the run wrote (what a user and README see, not the in-memory checks)."""
import json


def verdicts(ctx):
    return {c["name"]: c["passed"] for c in json.loads((ctx.out / "verdict.json").read_text())["checks"]}
