"""Plots and the HTML report: archsearch report, and the campaign run's plots/ artifacts."""

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from search import report
from search.campaign import open_store
from search.cli import main
from search.run import launch
from search.settings import resolve
from search.trial import TrialResult

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tiny, runs, *extra):
    assert main(["run", str(tiny), "--runs", str(runs), "-q", *extra]) == 0


def _best_name(runs, name):
    """The MLflow run name of the campaign's best trial (t003 l2 f8-4 ...)."""
    campaign = open_store(runs, None).require(name)
    ok = [r for r in campaign.trials() if r.outcome == "ok"]
    return max(ok, key=lambda r: (r.metrics["val_acc"], -r.trial)).name


def _images(page):
    return re.findall(r'<img src="([^"]+)"', page)


def test_report_writes_html_and_pngs(tiny, runs, tmp_path, capsys):
    _run(tiny, runs, "--trials", "4")
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["report", "tiny", "--runs", str(runs), "--out", str(out)]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out

    names = {"report.html", "best_so_far.png", "params.png", "pareto.png"}
    assert {p.name for p in out.iterdir()} == names
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    page = (out / "report.html").read_text()
    assert sorted(_images(page)) == ["best_so_far.png", "params.png", "pareto.png"]
    assert _best_name(runs, "tiny") in page
    for text in ("FINISHED", "4 ok", "digits", "tpe, seed 0", '<table class="board">'):
        assert text in page
    assert "<script" not in page and "http" not in page  # self-contained
    # values, never choice indices: the pooling kinds by name
    assert '<td class="txt">max</td>' in page or '<td class="txt">lp</td>' in page

    # an existing folder is reused, its files overwritten
    (out / "params.png").write_bytes(b"old")
    assert main(["report", "tiny", "--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "params.png").read_bytes()[:8] == PNG


def test_two_campaigns_share_one_best_so_far_figure(tiny, runs, capsys, monkeypatch):
    _run(tiny, runs, "--trials", "3")
    _run(tiny, runs, "--trials", "3", "--name", "tiny-random", "--algo", "random")
    figures = {}
    save = report._save

    def spy(fig, path):
        figures[path.name] = [
            t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().texts
        ]
        return save(fig, path)

    monkeypatch.setattr(report, "_save", spy)
    assert main(["report", "tiny", "tiny-random", "--runs", str(runs)]) == 0  # default --out
    out = runs / "reports" / "tiny-vs-tiny-random"
    page = (out / "report.html").read_text()
    images = _images(page)
    assert images.count("best_so_far.png") == 1
    assert {"params-tiny.png", "pareto-tiny.png", "params-tiny-random.png", "pareto-tiny-random.png"} <= set(
        images
    )
    for image in images:
        assert (out / image).read_bytes()[:8] == PNG
    legend = figures["best_so_far.png"]
    assert len(legend) == 2
    assert legend[0].startswith("tiny (tpe, seed 0)") and legend[1].startswith("tiny-random (random, seed 0)")
    assert _best_name(runs, "tiny") in page and _best_name(runs, "tiny-random") in page


def test_log_plots_puts_pngs_on_the_campaign_run(tiny, runs, caplog, monkeypatch):
    _run(tiny, runs, "--trials", "3")
    campaign = open_store(runs, None).require("tiny")
    report.log_plots(campaign)
    client = MlflowClient(tracking_uri=f"sqlite:///{runs / 'mlflow.db'}")
    listed = {f.path for f in client.list_artifacts(campaign.run_id, "plots")}
    assert listed == {"plots/best_so_far.png", "plots/params.png", "plots/pareto.png"}
    path = client.download_artifacts(campaign.run_id, "plots/pareto.png", str(runs))
    assert Path(path).read_bytes()[:8] == PNG

    # a plotting problem is a warning, never an exception
    def broken(*args, **kwargs):
        raise ValueError("no plot today")

    monkeypatch.setattr(report, "plot_params", broken)
    with caplog.at_level(logging.WARNING, logger="search.report"):
        report.log_plots(campaign)
    assert "could not log its plots: ValueError: no plot today" in caplog.text


def test_unknown_campaign_is_one_line(runs, capsys):
    assert main(["report", "nope", "--runs", str(runs)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("archsearch: error: no campaign named 'nope'")
    assert len(err.strip().splitlines()) == 1


def test_a_campaign_without_finished_trials_still_gets_a_report(tiny, runs, tmp_path, capsys):
    def failing(config, data, **kwargs):
        return TrialResult("failed", reason="x")

    settings = resolve(str(tiny), ["search.trials=2"], runs=runs, quiet=True)
    assert launch(settings, open_store(runs, None), evaluate_fn=failing) == 0
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["report", "tiny", "--runs", str(runs), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "campaign tiny: no finished trials yet" in said
    assert [p.name for p in out.iterdir()] == ["report.html"]
    page = (out / "report.html").read_text()
    assert "no finished trials yet" in page and "2 failed" in page
    assert _images(page) == []
    report.log_plots(open_store(runs, None).require("tiny"))  # nothing to draw: no error either


@pytest.mark.parametrize(
    ("x", "y", "front"),
    [
        ([1, 2, 3, 4], [0.5, 0.4, 0.7, 0.6], [0, 2]),
        ([3, 1, 2], [0.9, 0.2, 0.9], [1, 2]),  # equal accuracy: the smaller model only
        ([1, 1, 5], [0.3, 0.6, 0.8], [1, 2]),  # equal size: the better one only
    ],
)
def test_pareto_front(x, y, front):
    assert report.pareto_front(np.array(x, float), np.array(y, float)).tolist() == front


def test_a_running_campaign_keeps_its_plots_fresh(tiny, runs, monkeypatch):
    from search import driver

    drawn = []
    real = report.log_plots
    monkeypatch.setattr(driver, "PLOTS_EVERY", 0.0)  # refresh after every trial
    monkeypatch.setattr(report, "log_plots", lambda c: (drawn.append(1), real(c)))
    assert main(["run", str(tiny), "--runs", str(runs), "--trials", "2", "-q"]) == 0
    assert len(drawn) == 2  # after each trial; nothing left stale at the end
    campaign = open_store(runs, None).require("tiny")
    listed = {f.path for f in campaign.client.list_artifacts(campaign.run_id, "plots")}
    assert "plots/best_so_far.png" in listed


@pytest.mark.parametrize(("lo", "hi"), [(14e3, 64e3), (14e3, 19e3), (2e3, 3e6)])
def test_a_log_axis_has_labelled_ticks_within_its_data_even_inside_one_decade(lo, hi):
    """quickstart's parameters span 14k to 64k: no power of ten falls inside, yet the Pareto plot
    must say what its x axis measures."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.scatter([lo, hi], [0.5, 0.9])
    report._log_x(ax, lo, hi)
    fig.canvas.draw()
    inside = [t for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
    assert len(inside) >= 2, [t.get_text() for t in ax.get_xticklabels()]
    assert all(re.fullmatch(r"[0-9.]+[kMG]?", t.get_text()) for t in inside)
