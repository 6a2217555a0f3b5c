"""Simulate labeling a pre-labeled project with a query strategy and with random sampling; write the learning curves."""
import json
import logging
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from annotations.models import Project
from learner.services.simulation.oracles import SimulationError, oracle_from_csv, oracle_from_metadata, settings_overrides
from learner.services.simulation.runs import DEFAULT_STEP, DEFAULT_TEST_SHARE, simulation_plot, simulation_run


def _na(value) -> str:
    return "—" if value is None else str(value)


def _fixed(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


class Command(BaseCommand):
    help = (
        "Drive the real queue, retrain triggers, gate and swaps with simulated experts who answer from a held-back "
        "label column, on scratch copies of the project, and write learning curves (labels vs accuracy on a "
        "held-out test split) for the strategy and for random sampling as JSON and PNG. Each run is one database "
        "transaction, rolled back at its end; on SQLite it holds the write lock meanwhile."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", required=True, help="Project slug (or id).")
        oracle = parser.add_mutually_exclusive_group()
        oracle.add_argument("--oracle-field", metavar="NAME", help="Answers are label names in Item.metadata[NAME].")
        oracle.add_argument("--oracle-csv", metavar="FILE", help="Answers come from a CSV of external_id,label rows.")
        parser.add_argument("--strategy", help="Strategy to compare with random sampling (default: the project's).")
        parser.add_argument("--annotators", type=int, default=4, help="Simulated experts labeling in parallel.")
        parser.add_argument("--budget", type=int, default=400, help="Labels per run.")
        parser.add_argument("--seeds", type=int, default=3, help="Runs per strategy, each with its own test split.")
        parser.add_argument("--step", type=int, default=DEFAULT_STEP, help="Record a curve point every N labels.")
        parser.add_argument("--test-share", type=float, default=DEFAULT_TEST_SHARE,
                            help="Share of the answered items held out as the test split.")
        parser.add_argument("--out", help="Output path without extension (default var/simulations/<project>-<time>).")
        parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="overrides",
                            help="Change a retrain, gate or queue setting of the scratch copies, e.g. "
                                 "--set retrain_every_n_labels=20 (repeatable).")
        parser.add_argument("--noisy-annotators", type=int, default=0, metavar="K",
                            help="The first K simulated experts answer at random (uniform over the labels, seeded) "
                                 "from --noisy-from on (default 0: all answer from the oracle).")
        parser.add_argument("--noisy-from", type=int, default=0, metavar="N",
                            help="The noisy experts turn noisy once a run has N labels (default 0: from the start).")
        parser.add_argument("--no-baseline", action="store_true",
                            help="Run the strategy alone, without random sampling beside it.")
        parser.add_argument("--keep", action="store_true",
                            help="Commit the scratch projects for inspection instead of rolling each run back "
                                 "(the task messages their services queued are then sent too).")

    def handle(self, *args, **options) -> None:
        self.verbosity = options["verbosity"]
        project = self._project(options["project"])
        try:
            if options["oracle_field"]:
                oracle = oracle_from_metadata(project, options["oracle_field"])
            elif options["oracle_csv"]:
                oracle = oracle_from_csv(options["oracle_csv"])
            else:
                raise CommandError("Say where the answers are: --oracle-field NAME or --oracle-csv FILE.")
            with self._quiet(self.verbosity < 2):
                result = simulation_run(
                    project=project, oracle=oracle, strategy=options["strategy"] or project.query_strategy,
                    annotators=options["annotators"], budget=options["budget"], seeds=options["seeds"],
                    step=options["step"], test_share=options["test_share"],
                    overrides=settings_overrides(options["overrides"]), keep=options["keep"],
                    noisy_annotators=options["noisy_annotators"], noisy_from=options["noisy_from"],
                    baseline=not options["no_baseline"], log=self._log,
                )
        except SimulationError as exc:
            raise CommandError(exc.message) from None
        stem = self._stem(options["out"], project)
        stem.parent.mkdir(parents=True, exist_ok=True)
        json_path, png_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".png")
        result["outputs"] = {"json": str(json_path), "png": str(png_path)}
        json_path.write_text(json.dumps(result, indent=1) + "\n")
        simulation_plot(result, png_path)
        self._table(result)
        if result["kept_projects"]:
            self.stdout.write(f"Kept scratch projects: {', '.join(result['kept_projects'])}")
        self.stdout.write(self.style.SUCCESS(f"Wrote {json_path} and {png_path}"))

    @contextmanager
    def _quiet(self, quiet: bool):
        """Hold back the services' per-scoring and per-run log lines, hundreds in a run, unless -v 2 asks for them."""
        loggers = [logging.getLogger(name) for name in ("annotations", "learner")] if quiet else []
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)

    def _project(self, key: str) -> Project:
        project = Project.objects.filter(slug=key).first()
        if project is None and key.isdigit():
            project = Project.objects.filter(pk=int(key)).first()
        if project is None:
            raise CommandError(f"No project with slug or id '{key}'.")
        return project

    def _stem(self, out: str | None, project: Project) -> Path:
        if out:
            path = Path(out)
            return path.with_suffix("") if path.suffix.lower() in (".json", ".png") else path
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        return Path(settings.VAR_DIR) / "simulations" / f"{project.slug}-{stamp}"

    def _log(self, message: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(message)

    def _table(self, result: dict) -> None:
        full = result["full_pool_accuracy"]
        self.stdout.write(
            f"\n{result['dataset']}: {result['annotators']} annotators, budget {result['budget']}, "
            f"{len(result['seeds'])} seeds; full-pool accuracy {full:.3f}"
        )
        noise = result["noise"]
        if noise["annotators"]:
            self.stdout.write(f"{noise['annotators']} of them answer at random after {noise['after_labels']} labels")
        self.stdout.write(
            f"{'':<16}{'fitted on all labels':^28}{'live model':^36}\n"
            f"{'strategy':<16}{'n95':>6}{'n99':>6}{'AULC':>8}{'final':>8}"
            f"{'n95':>6}{'n99':>6}{'AULC':>8}{'final':>8}{'drop':>8}  first promotion (labels)"
        )
        for name, s in result["summary"].items():
            firsts = ", ".join(_na(x) for x in s["first_promotion_labels"])
            self.stdout.write(
                f"{name:<16}{_na(s['n95']):>6}{_na(s['n99']):>6}{_fixed(s['aulc']):>8}{_fixed(s['final_accuracy']):>8}"
                f"{_na(s['live_n95']):>6}{_na(s['live_n99']):>6}{_fixed(s['live_aulc']):>8}"
                f"{_fixed(s['live_final_accuracy']):>8}{_fixed(s['live_max_drop']):>8}  {firsts}"
            )
        self.stdout.write("Live model: before the first is live, the accuracy of answering the most frequent label "
                          "so far; drop: its largest fall below its best so far.")
