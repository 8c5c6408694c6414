"""The ``alignkit`` command line: one subcommand per stage of the loop.

Each area registers its commands from its own module (``register(app)``); flags are generated from
the stage's pydantic config (see :mod:`alignkit.cli.common`). The root group imports an area's
module only when one of its commands runs or prints its own help: ``alignkit --help`` lists the
commands from :data:`COMMANDS` alone (issue #18: importing every area's configs and building every
command's flags took over a second). ``tests/test_structure.py`` checks that the table says what
the modules register, so the listing cannot drift from the commands.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand

from alignkit.cli.common import AlignkitGroup, set_debug

# Top-level command -> (module under alignkit.cli that registers it, its help as that module sets it),
# in the order ``alignkit --help`` lists them (typer's: commands, then groups).
COMMANDS: dict[str, tuple[str, str]] = {
    "sft": ("train", "Supervised fine-tuning on prompt/completion or messages data."),
    "rm": ("preference", "Train a reward model on pairwise preferences or rankings (Bradley-Terry loss)."),
    "dpo": ("preference", "Direct preference optimisation on pairs (--loss sigmoid|ipo|hinge|robust)."),
    "kto": ("preference", "KTO on binary feedback (prompt/completion/label), or pairs split into up/down."),
    "ppo": ("rl", "Online RL with PPO (critic, GAE, KL-shaped reward) on a prompts file."),
    "rloo": ("rl", "Online RL with RLOO: k samples per prompt, leave-one-out baseline."),
    "grpo": ("rl", "Online RL with GRPO: k samples per prompt, group-normalised advantages."),
    "serve": ("ai", "Serve a model over an OpenAI-compatible HTTP API."),
    "reward-server": ("ai", "Serve a reward (rm:PATH, sandbox, python:mod:fn) in OpenRLHF's --remote_rm_url protocol."),
    "cai": ("ai", "Supervised Constitutional AI: critique and revise responses."),
    "ai-label": ("ai", "Label preference pairs with an AI feedback model (soft labels, both orders)."),
    "report": ("evaluate", "Write a self-contained HTML evaluation report from a results JSON file."),
    "evaluate": (
        "evaluate",
        "Evaluate models: --prompts FILE --models a=PATH,b=URL#model --judge SPEC for your prompts, or "
        "--models name=path,... alone on the held-out sandbox prompts; writes results.json and report.html.",
    ),
    "ratings": (
        "ratings",
        "Rate models from a FastChat/Arena battles file (model_a, model_b, winner): Bradley–Terry and Elo with CIs.",
    ),
    "run": ("pipeline", "Run a pipeline file; cached stages are skipped, a killed run resumes."),
    "demo": ("pipeline", "Run the whole loop on the built-in sandbox (CPU, a few minutes)."),
    "web": ("web", "Serve the annotation web app (API under /api/v1, pages for people)."),
    "redteam": (
        "safety",
        "Attack a target (templates, obfuscation, crescendo, PAIR); ASR with CIs; export SFT/DPO/Red-Instruct"
        " data. --target judge: injection flip rate of alignkit's pairwise judge (hardened vs legacy "
        "quoting).",
    ),
    "safe-align": ("safety", "Red-Instruct: NLL on safe completions + bounded gradient ascent on harmful ones (binary records)."),
    "data": ("data", "Dataset shapes: inspect how a file is read, export it for other engines."),
    "sandbox": ("sandbox", "The sandbox world: a small fictional KB with ground-truth HHH scores."),
    "feedback": ("feedback", "Human feedback: store, tasks, assignment, quality control, aggregation, export."),
    "rag": ("rag", "Retrieval-augmented generation: index a collection, answer with cited passages."),
    "monitor": ("monitor", "Watch a deployed model: judge its answers, people correct the flagged ones."),
    "benchmark": ("benchmark", "Expert benchmarks: criteria + rubric, prompts and references from experts, frozen, judged."),
    "safety": ("safety", "Moderation: guard classifiers, judge-model guards, filtering training data."),
}
# The modules, in the order they register (which decides the listing order above).
COMMAND_MODULES = [
    "train",
    "data",
    "preference",
    "rl",
    "sandbox",
    "feedback",
    "ai",
    "evaluate",
    "ratings",
    "pipeline",
    "web",
    "rag",
    "monitor",
    "benchmark",
    "safety",
]


class RootGroup(AlignkitGroup):
    """The root group, loading each area's commands on first use.

    Listing (the root's own help) uses stand-ins that carry only the name and help from
    :data:`COMMANDS`; resolving a command imports its module and registers all of that module's
    commands, so ``alignkit dpo --help`` imports the preference commands and nothing else.
    """

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return None
        if self._listing and cmd_name not in self.commands:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        if cmd_name not in self.commands:
            self.load(COMMANDS[cmd_name][0])
        return self.commands.get(cmd_name)

    def load(self, module_name: str) -> None:
        """Import ``alignkit.cli.<module_name>`` and add the commands its ``register`` defines."""
        module = importlib.import_module(f"alignkit.cli.{module_name}")
        area = typer.Typer()
        module.register(area)
        for name, command in typer.main.get_group(area).commands.items():
            self.add_command(command, name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except typer.TyperException as err:  # typer suggests only from the commands loaded so far
            message = getattr(err, "message", None)
            if args and isinstance(message, str) and "No such command" in message and "Did you mean" not in message:
                close = difflib.get_close_matches(args[0], list(COMMANDS))
                if close:
                    err.message = f"{message.rstrip('.')}. Did you mean {', '.join(repr(c) for c in close)}?"
            raise


app = typer.Typer(cls=RootGroup, help="alignkit: align language models to be helpful, honest and harmless.", no_args_is_help=True)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="ALIGNKIT_DEBUG", help="Show the full traceback when a command fails (default: one error line)."
    ),
) -> None:
    """alignkit: align language models to be helpful, honest and harmless."""
    set_debug(debug)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("accelerate", "httpx", "datasets", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app()
