"""Runs inside the sandboxed child process: ``python -I sandbox_runner.py JOB_DIR``.

Reads ``job.json`` (``{"code", "input"}``) from JOB_DIR, runs the code with ``INPUT`` bound
to the input, and writes ``{"result": RESULT}`` (or a serialisation error) to
``result.json``. Uses the standard library only; it must not import the worker package.
"""

import json
import sys
import traceback


def main() -> int:
    job_dir = sys.argv[1]
    with open(f"{job_dir}/job.json", encoding="utf-8") as f:
        job = json.load(f)
    scope = {"__name__": "__main__", "INPUT": job.get("input"), "RESULT": None}
    code = job["code"]
    exit_code = 0
    try:
        exec(compile(code, "<subtask>", "exec"), scope)  # running it is the sandbox's purpose
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - report any error of the user's code
        traceback.print_exc()
        exit_code = 1
    try:
        payload = json.dumps({"result": scope.get("RESULT")})
    except (TypeError, ValueError) as exc:
        payload = json.dumps({"result": None, "result_error": f"RESULT is not JSON: {exc}"})
    with open(f"{job_dir}/result.json", "w", encoding="utf-8") as f:
        f.write(payload)
    sys.stdout.flush()
    sys.stderr.flush()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
