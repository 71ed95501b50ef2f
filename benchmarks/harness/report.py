"""benchmark.py's report: one row per timing beside its peer, the table they print as, and
the machine load the run saw."""

from __future__ import annotations

import os


def row(suite, case, size, batch, unit, ours, peer=None, peer_name="", speedup=None,
        note="") -> dict:
    return {"suite": suite, "case": case, "size": list(size) if size else None,
            "batch": batch, "unit": unit, "ours": ours, "peer": peer, "peer_name": peer_name,
            "speedup": speedup, "note": note}


def format_rows(rows, header=True) -> str:
    lines = [f"{'suite':<10}{'case':<34}{'size':>10}{'batch':>6}{'ours':>10}{'peer':>10}"
             f"{'unit':>10}{'speed-up':>10}  peer"] if header else []
    for r in rows:
        size = "x".join(str(s) for s in r["size"]) if r["size"] else "-"
        peer = f"{r['peer']:10.3f}" if r["peer"] is not None else f"{'-':>10}"
        speedup = f"{r['speedup']:10.2f}" if r["speedup"] is not None else f"{'-':>10}"
        batch = r["batch"] if r["batch"] is not None else "-"
        lines.append(f"{r['suite']:<10}{r['case']:<34}{size:>10}{batch:>6}{r['ours']:10.3f}"
                     f"{peer}{r['unit']:>10}{speedup}  {r['peer_name']}")
    return "\n".join(lines)


def machine_load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"load_1min": one, "load_5min": five, "load_15min": fifteen}


def load_line(report: dict) -> str:
    """The machine load a report saw ("load_before", "load_after", "cpu_count"), in words."""
    return (f"load average before {report['load_before']['load_1min']:.2f}, after "
            f"{report['load_after']['load_1min']:.2f} (1 min) on {report['cpu_count']} cores")
