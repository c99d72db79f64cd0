"""placeholder"""

from bench.harness import Context, Unavailable
from bench.report import Section

TITLE = "load"
WHAT = ""


def run(ctx: Context) -> Section:
    raise Unavailable("not wired yet")
