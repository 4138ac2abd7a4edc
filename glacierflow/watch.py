"""`glacierflow watch`: the pipeline kept up to date as scenes arrive.

Every `interval_s` it asks for the pairs of the catalog's scenes (new scene items come
from `glacierflow scenes import` or through the STAC API's transactions, POST
/stac/collections/scenes/items). When a pair it has not seen appears, it runs the pipeline
on one Dask cluster kept for the whole watch: done pairs are passed over by their
granules, so only the new ones are tracked; their layers are appended to the cubes as
recent segments, which readers (/timeseries) see at once, and the composites and mosaics
of the cubes they changed are refreshed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from glacierflow.processing.mosaics.build import DEFAULT_REGION
from glacierflow.processing.pipeline import TrackRequest
from glacierflow.processing.scenes import Pair
from glacierflow.run import TRACK_DEFAULTS, RunReport, Say, dask_client, run_pairs
from glacierflow.settings import Settings


def watch(
    settings: Settings,
    dsn: str | None,
    pairs_now: Callable[[], Sequence[Pair]],
    *,
    interval_s: float = 60.0,
    stop: threading.Event | None = None,
    template: TrackRequest = TRACK_DEFAULTS,
    region: str = DEFAULT_REGION,
    references: bool = True,
    on_round: Callable[[RunReport], None] | None = None,
    say: Say = print,
) -> int:
    """Poll `pairs_now` until `stop` is set; run the pipeline on every poll that finds a
    pair not seen before (`on_round` gets each such round's report; with `references`, a
    round's new pairs get the summary mosaic the rounds before built as their prior).
    Returns the number of such rounds."""
    stop = stop or threading.Event()
    seen: set[str] = set()
    rounds = 0
    with dask_client(settings.dask_scheduler, settings.dask_workers) as client:
        while not stop.is_set():
            pairs = list(pairs_now())
            new = {pair.id for pair in pairs} - seen
            if new:
                say(f"watch: {len(new)} new pair(s)")
                report = run_pairs(
                    settings,
                    pairs,
                    dsn,
                    template=template,
                    region=region,
                    consolidate=False,
                    references=references,
                    client=client,
                    say=say,
                )
                seen |= new
                rounds += 1
                say(report.table())
                if on_round:
                    on_round(report)
            stop.wait(interval_s)
    return rounds
