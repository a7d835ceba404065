"""Tables and figures of a reproduction run folder: `python report.py outputs/reproduce/tiny [--paper]`."""

import argparse
import logging

from reward_transfer.cli import entry_point
from reward_transfer.reporting import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", nargs="?", default="outputs/reproduce/tiny", help="run folder (default: %(default)s)")
    parser.add_argument("--out", help="where to write tables and figures (default: the run folder)")
    parser.add_argument("--paper", action="store_true", help="put the paper's published numbers beside ours")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with entry_point():
        report = write_report(args.run, args.out, paper=args.paper)
    print(report.tables_md.read_text())
    for path in (report.tables_md, report.tables_tex, *report.figures, report.summary):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
