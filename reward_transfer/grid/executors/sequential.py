"""One step after another: in this process (`inprocess`) or each as its command line (`subprocess`). The first
failure stops the run with its command and log tail; Ctrl-C names the step and exits 130."""

from dataclasses import replace
from pathlib import Path

from reward_transfer.grid.executors.base import FAILED, Console, Executor, finish
from reward_transfer.grid.running import Launch, StepOutcome, log_path, run_step
from reward_transfer.grid.step import Step


class _Sequential(Executor):
    in_process = False

    def _launch(self) -> Launch:
        return replace(self.launch(), in_process=self.in_process)

    def run(self, steps: list[Step], graph: dict[str, Step], run: Path, overwrite: bool) -> list[StepOutcome]:
        console = Console(steps, f"reproduce {self.profile.name}: {len(steps)} steps, {self.config.name} (commands.sh "
                                 f"and logs/ in {run})")
        outcomes: list[StepOutcome] = []
        try:
            for step in steps:
                try:
                    outcome = run_step(step, graph, run, self._launch(), overwrite)
                except KeyboardInterrupt:
                    console.write(f"{console.prefix(step.name)}  interrupted (log: {log_path(run, step)})")
                    return finish(outcomes, run, interrupted=[step.name])
                console.report(outcome)
                outcomes.append(outcome)
                if outcome.status == FAILED:
                    break
        finally:
            console.close()
        return finish(outcomes, run)


class InProcessExecutor(_Sequential):
    """Every step's stage function in this process, on the config its command line would compose."""

    in_process = True


class SubprocessExecutor(_Sequential):
    """Each step its own command line, in order (as commands.sh would run them)."""
