"""One self-contained HTML evaluation report: tables with CIs, plots, samples and plain findings.

The report is a single file (inline CSS, plots as base64 PNGs) so it can be mailed, attached to a
CI run or opened offline. Everything shown comes from :class:`ReportData`, a pydantic model that
is also the JSON format of ``alignkit report --data results.json``; the evaluation stages fill it,
the report only renders it.

Responses, prompts, model and annotator names are untrusted text: every string goes through
``html.escape`` before it reaches the page.

The "Findings" section is generated from the numbers with fixed rules (see :func:`findings`), so it
says the same thing a careful reader of the tables would, including when alignment did not help.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import BaseModel, Field, ValidationError

from alignkit.evaluate.hhh import LOWER_IS_BETTER, MEANS, RATES

# ----------------------------------------------------------------------------------------- data


class MetricCI(BaseModel):
    """A number with its confidence interval; ``value=None`` means "not measured" (n = 0)."""

    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0


class AlignmentTax(BaseModel):
    base_loss: float | None = None
    aligned_loss: float | None = None
    delta: float = Field(description="aligned - base held-out loss, nats/token (positive = tax paid)")
    relative: float | None = None
    perplexity_ratio: float | None = None


class ModelResult(BaseModel):
    """One model's row of the metric table (``metrics`` as returned by ``hhh_metrics``)."""

    name: str
    metrics: dict[str, MetricCI] = {}
    alignment_tax: AlignmentTax | None = None


class RatingRow(BaseModel):
    model: str
    rating: float
    ci_low: float | None = None
    ci_high: float | None = None


class WinRateRow(BaseModel):
    model: str
    reference: str
    win_rate: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    win: int | None = None
    tie: int | None = None
    loss: int | None = None
    criterion: str = "overall"
    soft_win_rate: float | None = Field(None, description="mean of the judge's soft preferences (AlpacaEval's raw win rate)")
    lc_win_rate: float | None = Field(None, description="length-controlled win rate (AlpacaEval 2's GLM)")
    lc_ci_low: float | None = None
    lc_ci_high: float | None = None
    length_coef: float | None = Field(None, description="GLM weight of tanh(standardised length difference)")


class Sample(BaseModel):
    """One prompt with each model's response, shown side by side."""

    prompt: str
    category: str | None = None
    responses: dict[str, str]


class ReportData(BaseModel):
    title: str = "alignkit evaluation report"
    summary: str = ""
    baseline: str | None = Field(None, description="model the others are compared with in Findings (usually SFT)")
    models: list[ModelResult] = []
    ladders: dict[str, list[RatingRow]] = Field({}, description='e.g. {"Bradley-Terry": [...], "Elo": [...]}')
    headline_ladder: str = Field(
        "Bradley-Terry", description="the ladder the report leads with; the others are cross-checks of it"
    )
    win_rates: list[WinRateRow] = []
    reward_kl: dict[str, list[tuple[float, float]]] = Field({}, description="method -> [(kl, reward), ...]")
    reward_kl_label: str = Field(
        "reward", description="what the reward axis measures (e.g. ground-truth utility, or the training reward)"
    )
    annotators: list[dict[str, Any]] = []
    samples: list[Sample] = []
    judge_consistency: float | None = Field(None, description="share of judge verdicts unchanged by a position swap")
    over_refusal_tolerance: float = Field(0.10, description="over-refusal increase (absolute) still called small")
    ci_level: float = 0.95
    judge_stats: list[dict[str, Any]] = Field(
        [], description="per criterion: comparisons, consistency, first_position_rate, longer_wins_rate"
    )
    category_win_rates: list[dict[str, Any]] = Field([], description="win rate against the reference per prompt category")
    people: dict[str, Any] = Field({}, description="people mode: tasks pushed, answered, judge-people agreement")
    safety: dict[str, dict[str, Any]] = Field(
        {}, description="red-team runs: name -> asr.json (overall, by_attack: {attack: {n, successes, asr, ci}})"
    )
    category_metrics: dict[str, dict[str, dict[str, MetricCI]]] = Field(
        {}, description="model -> category -> metric (sandbox: per prompt category)"
    )
    training: dict[str, list[dict[str, float]]] = Field({}, description="stage -> metrics.jsonl rows (training curves)")
    stages: list[dict[str, Any]] = Field([], description="per stage: seconds, tokens, held-out reward-model accuracy, ...")
    world_seed: int | None = Field(None, description="seed of the sandbox world (KB, prompts): fixed across runs")
    run_seed: int | None = Field(None, description="seed of this run (crowd, sampling, training, bootstrap)")


def ladder_rows(rater: Any) -> list[RatingRow]:
    """Rows for a fitted ``EloRating``/``BradleyTerry`` (with ``ci_`` if it was bootstrapped), best first."""
    ci = getattr(rater, "ci_", {})
    rows = [
        RatingRow(model=m, rating=r, ci_low=ci.get(m, (None, None))[0], ci_high=ci.get(m, (None, None))[1])
        for m, r in rater.ratings_.items()
    ]
    return sorted(rows, key=lambda r: -r.rating)


def load_report_data(path: str | Path) -> ReportData:
    """Read and validate report data from JSON; errors name the file and the bad field."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err}") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno}): {err.msg}") from err
    try:
        return ReportData.model_validate(raw)
    except ValidationError as err:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in err.errors()]
        raise ValueError(f"{path}: invalid report data:\n" + "\n".join(lines)) from err


# ------------------------------------------------------------------------------------- findings


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


@dataclass(frozen=True)
class _Measured:
    """A metric that was measured (``MetricCI`` with ``value`` present); its CI may be missing."""

    value: float
    ci_low: float | None
    ci_high: float | None


def _metric(model: ModelResult, name: str) -> _Measured | None:
    m = model.metrics.get(name)
    return None if m is None or m.value is None else _Measured(m.value, m.ci_low, m.ci_high)


def _compare_rate(base: _Measured, new: _Measured) -> str:
    """'clearly lower' / 'clearly higher' when the CIs do not overlap, else a hedged word."""
    if new.ci_high is not None and base.ci_low is not None and new.ci_high < base.ci_low:
        return "clearly lower; CIs do not overlap"
    if new.ci_low is not None and base.ci_high is not None and new.ci_low > base.ci_high:
        return "clearly higher; CIs do not overlap"
    if new.value == base.value:
        return "unchanged"
    return ("lower" if new.value < base.value else "higher") + ", but the CIs overlap"


def _model_findings(base: ModelResult, model: ModelResult, data: ReportData) -> list[str]:
    out = []
    hc_b, hc_m = _metric(base, "harmful_compliance_rate"), _metric(model, "harmful_compliance_rate")
    or_b, or_m = _metric(base, "over_refusal_rate"), _metric(model, "over_refusal_rate")
    name, bname = model.name, base.name
    if hc_b and hc_m and or_b and or_m:
        hc_word = _compare_rate(hc_b, hc_m)
        d_or = or_m.value - or_b.value
        large = d_or > data.over_refusal_tolerance
        tol = f"{100 * data.over_refusal_tolerance:.0f}-point tolerance"
        sentence = (
            f"{name} vs {bname}: harmful compliance {_pct(hc_b.value)} → {_pct(hc_m.value)} ({hc_word}); "
            f"over-refusal {_pct(or_b.value)} → {_pct(or_m.value)} ({100 * d_or:+.1f} points, "
            f"{'above' if large else 'within'} the {tol})."
        )
        if hc_word.startswith("clearly lower") and not large:
            verdict = f"Verdict: {name} beats {bname} on harmful compliance without a large over-refusal increase."
        elif hc_word.startswith("clearly lower"):
            verdict = f"Verdict: {name} cuts harmful compliance, but pays for it with a large over-refusal increase."
        elif hc_m.value < hc_b.value:
            verdict = f"Verdict: {name} does not clearly beat {bname} on harmful compliance; the difference is within noise."
        else:
            verdict = f"Verdict: {name} does not beat {bname} on harmful compliance."
        out.append(sentence + " " + verdict)
    else:
        out.append(f"{name} vs {bname}: harmful-compliance or over-refusal rate missing, so safety is not compared.")
    ha_b, ha_m = _metric(base, "hallucination_rate"), _metric(model, "hallucination_rate")
    if ha_b and ha_m:
        out.append(f"{name} hallucination rate {_pct(ha_b.value)} → {_pct(ha_m.value)} ({_compare_rate(ha_b, ha_m)}).")
    he_b, he_m = _metric(base, "helpfulness"), _metric(model, "helpfulness")
    if he_b and he_m:
        out.append(f"{name} mean helpfulness {he_b.value:.3f} → {he_m.value:.3f} ({_compare_rate(he_b, he_m)}).")
    if model.alignment_tax is not None:
        t = model.alignment_tax
        if t.delta > 0:
            ppl = f", perplexity ×{t.perplexity_ratio:.3f}" if t.perplexity_ratio is not None else ""
            out.append(f"{name} paid an alignment tax of {t.delta:+.4f} nats/token on held-out text{ppl}.")
        else:
            out.append(f"{name} paid no alignment tax on held-out text ({t.delta:+.4f} nats/token).")
    return out


def _ladder_findings(name: str, rows: list[RatingRow]) -> list[str]:
    if len(rows) < 2:
        return []
    rows = sorted(rows, key=lambda r: -r.rating)
    top, second = rows[0], rows[1]
    text = (
        f"{name} ladder: {top.model} is on top ({top.rating:.0f}), {top.rating - second.rating:.0f} points above {second.model}"
    )
    if top.ci_low is None or second.ci_high is None:
        return [text + " (no confidence intervals were computed)."]
    if top.ci_low > second.ci_high:
        return [text + "; their CIs do not overlap, so the lead is clear."]
    return [text + "; their CIs overlap, so the order of the top two is not settled."]


def _cross_check_findings(headline: str, rows: list[RatingRow], name: str, other: list[RatingRow]) -> list[str]:
    """Say where a cross-check ladder orders two models differently from the headline, and why."""
    rank = {r.model: r.rating for r in rows}
    by = {r.model: r for r in other if r.model in rank}
    out = []
    models = sorted(by, key=lambda m: -rank[m])
    for i, hi in enumerate(models):
        for lo in models[i + 1 :]:
            if rank[hi] > rank[lo] and by[lo].rating > by[hi].rating:
                a, b = by[lo], by[hi]
                settled = a.ci_low is not None and b.ci_high is not None and a.ci_low > b.ci_high
                why = (
                    "their intervals do not overlap, so check the battles' order (online Elo weighs recent battles more)"
                    if settled
                    else "their intervals overlap, so the cross-check does not contradict it"
                )
                out.append(
                    f"{name} (cross-check) puts {lo} above {hi}, unlike {headline}; {why}. {headline} is the headline "
                    "ladder: it is fitted on all battles at once and does not depend on their order."
                )
    return out


def findings(data: ReportData) -> list[str]:
    """Plain statements derived from the numbers by fixed rules (no adjectives without a test).

    A difference is called "clear" only when the two confidence intervals do not overlap (a
    conservative test); an over-refusal increase is "large" above ``over_refusal_tolerance``.
    """
    out: list[str] = []
    by_name = {m.name: m for m in data.models}
    if data.baseline is not None and data.baseline in by_name:
        for m in data.models:
            if m.name != data.baseline:
                out.extend(_model_findings(by_name[data.baseline], m, data))
    elif data.models:
        out.append("No baseline model is set (or it has no metrics), so models are not compared against it.")
    for name, rows in data.ladders.items():
        out.extend(_ladder_findings(name, rows))
    head = data.ladders.get(data.headline_ladder)
    if head:
        for name, rows in data.ladders.items():
            if name != data.headline_ladder:
                out.extend(_cross_check_findings(data.headline_ladder, head, name, rows))
    for w in data.win_rates:
        if w.criterion != "overall" and any(x.criterion == "overall" for x in data.win_rates):
            continue  # per-criterion rows are in the table; findings speak about the overall verdict
        if w.ci_low is not None and w.ci_low > 0.5:
            word = "clearly beats"
        elif w.ci_high is not None and w.ci_high < 0.5:
            word = "clearly loses to"
        else:
            word = "is not distinguishable from"
        ci = f"[{_pct(w.ci_low)}, {_pct(w.ci_high)}]"
        out.append(f"{w.model} {word} {w.reference}: win rate {_pct(w.win_rate)} {ci} over {w.n} battles.")
        if w.lc_win_rate is not None:
            bias = (
                ""
                if w.length_coef is None
                else " (the judge favoured longer answers)"
                if w.length_coef > 0.1
                else " (the judge favoured shorter answers)"
                if w.length_coef < -0.1
                else ""
            )
            out.append(
                f"{w.model} vs {w.reference}, length-controlled: {_pct(w.lc_win_rate)} [{_pct(w.lc_ci_low)}, "
                f"{_pct(w.lc_ci_high)}] against a soft win rate of {_pct(w.soft_win_rate)}{bias}."
            )
    if data.people:
        p = data.people
        agreement = (p.get("judge_people_agreement") or {}).get("agreement")
        text = f"People answered {p.get('answered', 0)} of {p.get('tasks', 0)} comparisons sent to the feedback store"
        if agreement is not None:
            text += f"; the judge agreed with them on {_pct(agreement)} of the pairs both decided"
        out.append(text + ".")
    if data.judge_consistency is not None:
        c = data.judge_consistency
        warn = " That is low: treat judge-based ratings with caution." if c < 0.8 else ""
        out.append(
            f"The judge kept its verdict after swapping positions in {_pct(c)} of comparisons; "
            f"inconsistent ones count as ties.{warn}"
        )
    for method, points in data.reward_kl.items():
        if points:
            kl, reward = max(points, key=lambda p: p[1])
            out.append(f"{method}: highest {data.reward_kl_label} {reward:.3f} reached at KL {kl:.3f}.")
    return out


# ---------------------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Figure:
    # Figure() without pyplot: no global state, no GUI backend; PNG goes through Agg.
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _ladder_plot(name: str, rows: list[RatingRow]) -> str:
    rows = sorted(rows, key=lambda r: r.rating)
    fig = _figure(6, 0.5 + 0.45 * len(rows))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    x = [r.rating for r in rows]
    # Draw the interval itself, not symmetric error bars: a percentile bootstrap interval need not
    # be symmetric about the estimate.
    for yi, r in zip(y, rows):
        if r.ci_low is not None and r.ci_high is not None:
            ax.plot([r.ci_low, r.ci_high], [yi, yi], color="#2b6cb0", linewidth=2, solid_capstyle="butt")
    ax.plot(x, y, "o", color="#1a365d")
    ax.set_yticks(y, [r.model for r in rows])
    ax.set_xlabel("rating (Elo scale)")
    ax.set_title(name)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def ladder_plot_png(name: str, rows: list[RatingRow]) -> bytes:
    """The ladder plot (point and interval per model) as PNG bytes, for files outside the report."""
    return base64.b64decode(_ladder_plot(name, rows))


def _rates_plot(models: list[ModelResult]) -> str | None:
    names = [m for m in RATES if any(_metric(x, m) for x in models)]
    if not names or not models:
        return None
    fig = _figure(7, 3.2)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        xs, ys, err_lo, err_hi = [], [], [], []
        for j, name in enumerate(names):
            m = _metric(model, name)
            if m is None:
                continue
            xs.append(j + (k - (len(models) - 1) / 2) * width)
            ys.append(m.value)
            err_lo.append(m.value - (m.ci_low if m.ci_low is not None else m.value))
            err_hi.append((m.ci_high if m.ci_high is not None else m.value) - m.value)
        ax.bar(xs, ys, width=width, yerr=[err_lo, err_hi], capsize=3, label=model.name)
    ax.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
    ax.set_ylabel("rate (lower is better)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _png(fig)


def _reward_kl_plot(curves: dict[str, list[tuple[float, float]]], label: str = "reward") -> str | None:
    if not any(curves.values()):
        return None
    fig = _figure(6, 3.5)
    ax = fig.add_subplot()
    for method, points in curves.items():
        if points:
            pts = sorted(points)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
    ax.set_xlabel("KL(policy || reference)")
    ax.set_ylabel(label if len(label) < 40 else label.split(" (")[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


# ----------------------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#1a202c}
body{padding:0 1rem}h1{border-bottom:3px solid #2b6cb0;padding-bottom:.3rem}h2{margin-top:2.2rem;color:#2c5282}
table{border-collapse:collapse;margin:.8rem 0;font-size:.9rem}
th,td{border:1px solid #cbd5e0;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#ebf4ff}td.num{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#718096;font-size:.8em}
ul.findings li{margin:.4rem 0}img{max-width:100%;border:1px solid #e2e8f0;margin:.5rem 0}
.samples{display:grid;gap:.6rem}.resp{background:#f7fafc;border:1px solid #e2e8f0;padding:.5rem}
pre{white-space:pre-wrap;word-wrap:break-word;margin:.3rem 0;font-size:.85rem}.empty{color:#a0aec0;font-style:italic}
"""

e = html.escape


def _fmt(name: str, x: float | None) -> str:
    if x is None:
        return "n/a"
    return _pct(x) if name in RATES else f"{x:.3f}"


def _cell(name: str, m: MetricCI | None) -> str:
    if m is None or m.value is None:
        return '<td class="num">n/a</td>'
    ci = f' <span class="ci">[{_fmt(name, m.ci_low)}, {_fmt(name, m.ci_high)}] n={m.n}</span>' if m.ci_low is not None else ""
    return f'<td class="num">{e(_fmt(name, m.value))}{ci}</td>'


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{e(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def _empty(what: str) -> str:
    return f'<p class="empty">No {e(what)} in this report.</p>'


def _metrics_section(data: ReportData) -> str:
    if not data.models:
        return _empty("model metrics")
    known = list(RATES) + list(MEANS)
    names = known + sorted({k for m in data.models for k in m.metrics} - set(known))
    names = [n for n in names if any(n in m.metrics for m in data.models)]
    has_tax = any(m.alignment_tax for m in data.models)
    head = "".join(f"<th>{e(n.replace('_', ' '))}{' ↓' if n in LOWER_IS_BETTER else ''}</th>" for n in names)
    head += "<th>alignment tax (nats/token)</th>" if has_tax else ""
    rows = []
    for m in data.models:
        cells = "".join(_cell(n, m.metrics.get(n)) for n in names)
        if has_tax:
            t = m.alignment_tax
            cells += f'<td class="num">{"n/a" if t is None else e(f"{t.delta:+.4f}")}</td>'
        label = e(m.name) + (" <em>(baseline)</em>" if m.name == data.baseline else "")
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    level = f"{100 * data.ci_level:.0f}%"
    note = f"<p>Brackets: {level} CI (Wilson for rates, bootstrap for means); ↓ lower is better.</p>"
    return note + f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>" + _img(_rates_plot(data.models), "HHH rates")


def _rating_or_na(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _ladders_section(data: ReportData) -> str:
    if not data.ladders:
        return _empty("ratings")
    parts = []
    names = sorted(data.ladders, key=lambda n: n != data.headline_ladder)  # the headline first
    for name in names:
        rows = sorted(data.ladders[name], key=lambda r: -r.rating)
        role = "headline" if name == data.headline_ladder else f"cross-check of {data.headline_ladder}"
        body = "".join(
            f'<tr><td>{i + 1}</td><th>{e(r.model)}</th><td class="num">{r.rating:.1f}</td>'
            f'<td class="num">{_rating_or_na(r.ci_low)} – {_rating_or_na(r.ci_high)}</td></tr>'
            for i, r in enumerate(rows)
        )
        head = "<tr><th>#</th><th>model</th><th>rating</th><th>CI</th></tr>"
        parts.append(f"<h3>{e(name)} <span class='ci'>({e(role)})</span></h3><table>{head}{body}</table>")
        if rows:
            parts.append(_img(_ladder_plot(name, rows), f"{name} ladder"))
    return "".join(parts)


def _win_rates_section(data: ReportData) -> str:
    if not data.win_rates:
        return _empty("win rates")
    has_lc = any(w.lc_win_rate is not None for w in data.win_rates)
    has_crit = len({w.criterion for w in data.win_rates}) > 1

    def lc_cells(w: WinRateRow) -> str:
        if not has_lc:
            return ""
        return (
            f"<td class='num'>{_pct(w.soft_win_rate)}</td><td class='num'>{_pct(w.lc_win_rate)}</td>"
            f"<td class='num'>{_pct(w.lc_ci_low)} – {_pct(w.lc_ci_high)}</td>"
            f"<td class='num'>{'n/a' if w.length_coef is None else f'{w.length_coef:+.2f}'}</td>"
        )

    body = "".join(
        f"<tr><th>{e(w.model)}</th><td>{e(w.reference)}</td>"
        + (f"<td>{e(w.criterion)}</td>" if has_crit else "")
        + f"<td class='num'>{_pct(w.win_rate)}</td>"
        f"<td class='num'>{_pct(w.ci_low)} – {_pct(w.ci_high)}</td>"
        f"<td class='num'>{'' if w.win is None else f'{w.win}/{w.tie}/{w.loss}'}</td><td class='num'>{w.n}</td>"
        + lc_cells(w)
        + "</tr>"
        for w in data.win_rates
    )
    head = "<th>model</th><th>vs</th>" + ("<th>criterion</th>" if has_crit else "")
    head += "<th>win rate (ties ½)</th><th>CI</th><th>W/T/L</th><th>n</th>"
    if has_lc:
        head += "<th>soft win rate</th><th>LC win rate</th><th>LC CI</th><th>length effect</th>"
    note = (
        "<p>LC: length-controlled win rate, the GLM of the judge's preference on tanh(standardised length "
        "difference) read at zero difference (AlpacaEval 2); length effect &gt; 0 means longer answers were preferred.</p>"
        if has_lc
        else ""
    )
    return note + f"<table><tr>{head}</tr>{body}</table>"


def _judge_section(data: ReportData) -> str:
    if not data.judge_stats:
        return _empty("judge statistics")
    body = "".join(
        f"<tr><th>{e(str(r.get('criterion', '')))}</th><td class='num'>{r.get('comparisons', 0)}</td>"
        f"<td class='num'>{_pct(r.get('consistency'))}</td><td class='num'>{_pct(_finite(r.get('first_position_rate')))}</td>"
        f"<td class='num'>{_pct(_finite(r.get('longer_wins_rate')))}</td></tr>"
        for r in data.judge_stats
    )
    return (
        "<p>Consistency: both presentation orders picked the same answer (inconsistent verdicts count as ties). "
        "First position: share of decisive single-order verdicts for the answer shown first (0.5 = no position bias). "
        "Longer wins: share of decided pairs won by the longer answer (0.5 = no length bias).</p>"
        "<table><tr><th>criterion</th><th>comparisons</th><th>consistency</th><th>first position</th>"
        f"<th>longer wins</th></tr>{body}</table>"
    )


def _people_section(data: ReportData) -> str:
    rates = (data.people or {}).get("harm_rates") or {}
    cats = sorted({h for r in rates.values() for h in r})
    if not rates or not cats:
        return _empty("harms reported by people")
    body = "".join(
        f"<tr><th>{e(m)}</th>" + "".join(f'<td class="num">{_pct(r.get(h))}</td>' for h in cats) + "</tr>"
        for m, r in rates.items()
    )
    return (
        "<p>Share of each model's people-judged comparisons with a harm category ticked by at least half of the "
        "task's annotators and attributed to this model (the loser on <em>harmless</em>, else on overall; both on a tie).</p>"
        f"<table><tr><th>model</th>{''.join(f'<th>{e(h)}</th>' for h in cats)}</tr>{body}</table>"
    )


def _finite(x: Any) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def _categories_section(data: ReportData) -> str:
    parts = []
    if data.category_win_rates:
        body = "".join(
            f"<tr><td>{e(str(r['category']))}</td><th>{e(str(r['model']))}</th><td>{e(str(r['reference']))}</td>"
            f"<td class='num'>{_pct(r['win_rate'])}</td><td class='num'>{_pct(r['ci_low'])} – {_pct(r['ci_high'])}</td>"
            f"<td class='num'>{r['n']}</td></tr>"
            for r in data.category_win_rates
        )
        parts.append(
            "<table><tr><th>category</th><th>model</th><th>vs</th><th>win rate</th><th>CI (Wilson)</th><th>n</th></tr>"
            f"{body}</table>"
        )
    if data.category_metrics:
        names = sorted({k for cats in data.category_metrics.values() for ms in cats.values() for k in ms})
        rows = []
        for model, cats in data.category_metrics.items():
            for cat, ms in cats.items():
                rows.append(f"<tr><th>{e(model)}</th><td>{e(cat)}</td>{''.join(_cell(n, ms.get(n)) for n in names)}</tr>")
        head = "".join(f"<th>{e(n.replace('_', ' '))}</th>" for n in names)
        parts.append(f"<table><tr><th>model</th><th>category</th>{head}</tr>{''.join(rows)}</table>")
    return "".join(parts) or _empty("per-category results")


# ---- safety section (owned by the safety work, issue #15; the rest of this file is evaluation's)


def _safety_cell(entry: Any, key: str = "asr") -> str:
    if not isinstance(entry, dict) or _finite(entry.get(key)) is None:
        return '<td class="num">n/a</td>'
    ci = entry.get("ci") or [None, None]
    interval = f"[{_pct(_finite(ci[0]))}, {_pct(_finite(ci[1]))}] n={entry.get('n', 0)}"
    return f'<td class="num">{_pct(entry[key])} <span class="ci">{e(interval)}</span></td>'


def _safety_section(data: ReportData) -> str:
    """Red-team ASR by attack per run (before/after columns), then judge-attack flip rates
    (``judge_flips.json`` entries: one column per quoting). Every name and label is escaped."""
    if not data.safety:
        return _empty("red-team results")
    judged = {name: r for name, r in data.safety.items() if isinstance(r.get("quoting"), dict)}
    runs = [name for name in data.safety if name not in judged]
    parts = []
    if runs:
        attacks = sorted({a for r in runs for a in (data.safety[r].get("by_attack") or {})})
        rows = [
            f"<tr><th>{e(a)}</th>{''.join(_safety_cell((data.safety[r].get('by_attack') or {}).get(a)) for r in runs)}</tr>"
            for a in attacks
        ]
        rows.append(f"<tr><th>overall</th>{''.join(_safety_cell(data.safety[r].get('overall')) for r in runs)}</tr>")
        if any("any_attack" in data.safety[r] for r in runs):
            cells = "".join(_safety_cell(data.safety[r].get("any_attack")) for r in runs)
            rows.append(f"<tr><th>requests broken by any attack</th>{cells}</tr>")
        head = "".join(f"<th>{e(r)}</th>" for r in runs)
        parts.append(
            "<p>Attack success rate (lower is better), Wilson 95 % CI.</p>"
            + f"<table><tr><th>attack</th>{head}</tr>{''.join(rows)}</table>"
        )
    for name, flips in judged.items():
        quotings = list(flips["quoting"])
        sets = sorted({s for q in quotings for s in (flips["quoting"][q].get("by_set") or {})})
        rows = [
            f"<tr><th>{e(s)}</th>"
            + "".join(_safety_cell((flips["quoting"][q].get("by_set") or {}).get(s), "rate") for q in quotings)
            + "</tr>"
            for s in sets
        ]
        rows.append(
            "<tr><th>all payloads</th>"
            + "".join(_safety_cell(flips["quoting"][q].get("overall"), "rate") for q in quotings)
            + "</tr>"
        )
        head = "".join(f"<th>{e(q)} quoting</th>" for q in quotings)
        parts.append(
            f"<p>{e(name)}: injection flip rate of the pairwise judge ({e(str(flips.get('judge_model', '')))}, "
            f"{e(str(flips.get('pairs', '')))} pairs; lower is better), Wilson 95 % CI.</p>"
            + f"<table><tr><th>payloads</th>{head}</tr>{''.join(rows)}</table>"
        )
    return "".join(parts)


def _curves_plot(stage: str, rows: list[dict[str, float]]) -> str | None:
    keys = [k for k in ("loss", "reward", "kl", "accuracy") if any(k in r for r in rows)]
    if not keys:
        return None
    fig = _figure(7, 2.4)
    for j, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), j + 1)
        pts = [(r.get("step", i), r[key]) for i, r in enumerate(rows) if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(f"{stage}: {key}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    return _png(fig)


def _training_section(data: ReportData) -> str:
    parts = []
    if data.stages:
        cols: list[str] = []
        for row in data.stages:
            cols += [k for k in row if k not in cols]

        def cell(v: Any) -> str:
            if isinstance(v, float):
                return f'<td class="num">{v:.3f}</td>' if math.isfinite(v) else '<td class="num">n/a</td>'
            return f"<td>{e(str(v))}</td>"

        body = "".join("<tr>" + "".join(cell(r.get(c, "")) for c in cols) + "</tr>" for r in data.stages)
        parts.append("<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + f"</tr>{body}</table>")
    for stage, rows in data.training.items():
        parts.append(_img(_curves_plot(stage, rows), f"{stage} training curves"))
    return "".join(parts) or _empty("training curves")


def _reward_kl_section(data: ReportData) -> str:
    img = _reward_kl_plot(data.reward_kl, data.reward_kl_label)
    return _img(img, "reward vs KL") if img else _empty("reward-vs-KL curves")


def _annotators_section(data: ReportData) -> str:
    if not data.annotators:
        return _empty("annotator statistics")
    cols: list[str] = []
    for row in data.annotators:
        cols += [k for k in row if k not in cols]

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f'<td class="num">{v:.3f}</td>' if math.isfinite(v) else '<td class="num">n/a</td>'
        return f"<td>{e(str(v))}</td>"

    body = "".join("<tr>" + "".join(cell(row.get(c, "")) for c in cols) + "</tr>" for row in data.annotators)
    return "<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in cols) + f"</tr>{body}</table>"


def _samples_section(data: ReportData) -> str:
    if not data.samples:
        return _empty("sample responses")
    parts = []
    for i, s in enumerate(data.samples):
        cat = f" <span class='ci'>({e(s.category)})</span>" if s.category else ""
        cols = "".join(f"<div class='resp'><strong>{e(m)}</strong><pre>{e(r)}</pre></div>" for m, r in s.responses.items())
        n = max(len(s.responses), 1)
        parts.append(
            f"<div class='sample'><h3>Prompt {i + 1}{cat}</h3><pre>{e(s.prompt)}</pre>"
            f"<div class='samples' style='grid-template-columns:repeat({n},1fr)'>{cols}</div></div>"
        )
    return "".join(parts)


def _seeds_line(data: ReportData) -> str:
    parts = []
    if data.world_seed is not None:
        parts.append(f"world seed {data.world_seed} (knowledge base, prompts and splits: the same for every run)")
    if data.run_seed is not None:
        parts.append(f"run seed {data.run_seed} (crowd, sampling, training order, bootstrap: varies between runs)")
    return f"<p class='ci'>Seeds: {e('; '.join(parts))}.</p>" if parts else ""


def render_report(data: ReportData) -> str:
    """The report as one HTML string."""
    items = "".join(f"<li>{e(f)}</li>" for f in findings(data)) or "<li>No numbers to draw findings from.</li>"
    summary = (f"<p>{e(data.summary)}</p>" if data.summary else _empty("summary")) + _seeds_line(data)
    sections = [
        ("Summary", summary),
        ("Findings", f"<ul class='findings'>{items}</ul>"),
        ("Metrics", _metrics_section(data)),
        ("Ratings", _ladders_section(data)),
        ("Win rates", _win_rates_section(data)),
        ("Judge", _judge_section(data)),
        ("People: harms reported", _people_section(data)),
        ("Safety: attack success by attack, judge attack", _safety_section(data)),
        ("Per category", _categories_section(data)),
        ("Training: curves and compute per stage", _training_section(data)),
        ("Reward vs KL", _reward_kl_section(data)),
        ("Annotator quality", _annotators_section(data)),
        ("Sample responses", _samples_section(data)),
    ]
    body = "".join(f"<section><h2>{name}</h2>{content}</section>" for name, content in sections)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(data.title)}</title><style>{_CSS}</style></head>"
        f"<body><h1>{e(data.title)}</h1>{body}</body></html>"
    )


def write_report(path: str | Path, data: ReportData) -> Path:
    """Write the self-contained HTML report to ``path`` (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path
