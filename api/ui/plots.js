// The two pictures of a run, drawn the same on every page: its loss by epoch, and the network's
// curve over the dataset's points (one curve, or one per run compared).
import { COLORS, chart, line, scatter, thinned } from "./charts.js";
import { fmt } from "./dom.js";
import { curve } from "./network.js";

const SHOWN_EPOCHS = 5000; // the most loss entries drawn; more are thinned evenly

// A job's loss curves: every entry received is kept, at most SHOWN_EPOCHS of them drawn.
export class LossChart {
  constructor(container, logToggle) {
    this.container = container;
    this.toggle = logToggle;
    this.epochs = [];
    this.loss = [];
    this.val = null;
    this.made = null;
    logToggle.addEventListener("change", () => this.redraw(true));
  }

  // Loss entries of epochs start+1..start+loss.length; what arrives again after a resumed
  // stream replaces what was there.
  add(start, loss, val, source) {
    while (this.epochs.length && this.epochs[this.epochs.length - 1] > start) {
      this.epochs.pop();
      this.loss.pop();
      this.val?.pop();
    }
    if (val && !this.val) this.val = this.epochs.map(() => null);
    loss.forEach((v, i) => {
      this.epochs.push(start + i + 1);
      this.loss.push(v);
      this.val?.push(val ? val[i] : null);
    });
    this.container.dataset.source = source;
    this.redraw();
  }

  set(epochs, loss, val, source) {
    Object.assign(this, { epochs, loss, val });
    this.container.dataset.source = source;
    this.redraw(true);
  }

  redraw(rebuild = false) {
    const n = this.epochs.length;
    this.container.dataset.points = n;
    this.container.setAttribute(
      "aria-label",
      `Loss by epoch: ${fmt(n)} epochs${n ? `, last ${fmt(this.loss[n - 1])}` : ""}`,
    );
    if (!n) return;
    const log = this.toggle.checked;
    this.container.dataset.scale = log ? "log" : "linear";
    const pick = thinned(n, SHOWN_EPOCHS);
    const take = (a) => (pick ? pick.map((i) => a[i]) : a.slice());
    // A log axis has no place for a loss of 0: drawn as a gap.
    const y = (a) => take(a).map((v) => (log && !(v > 0) ? null : v));
    const data = [take(this.epochs), y(this.loss), ...(this.val ? [y(this.val)] : [])];
    if (this.made && !rebuild && this.made.series.length === data.length) {
      this.made.setData(data);
      return;
    }
    this.made?.destroy();
    this.container.replaceChildren();
    this.made = chart(this.container, {
      xLabel: "epoch",
      yLabel: log ? "loss (log scale)" : "loss",
      logY: log,
      data,
      series: [
        line("training loss", COLORS[0]),
        ...(this.val ? [line("validation loss", COLORS[1], { dash: [6, 4] })] : []),
      ],
    });
  }
}

// Several runs' loss curves on one log axis: runs = [{label, epochs, loss}].
export function lossOverlay(container, runs, yLabel = "loss") {
  container.chart?.destroy();
  container.chart = null;
  container.replaceChildren();
  container.dataset.series = runs.length;
  if (!runs.length) return;
  container.chart = chart(container, {
    xLabel: "epoch",
    yLabel: `${yLabel} (log scale)`,
    logY: true,
    data: uPlot.join(runs.map((r) => [r.epochs, r.loss.map((v) => (v > 0 ? v : null))])),
    series: runs.map((r, i) => line(r.label, COLORS[i % COLORS.length])),
  });
}

// The dataset's points and the network's curves over them. New curves are drawn at the next
// frame the screen shows: parameters arriving faster than that replace the ones waiting.
export class FitChart {
  constructor(container) {
    this.container = container;
    this.points = null;
    this.curves = [];
    this.made = null;
    this.frame = null;
  }

  setPoints({ x, y }) {
    const order = x.map((_, i) => i).sort((a, b) => x[a] - x[b]);
    this.points = [order.map((i) => x[i]), order.map((i) => y[i])];
    this.container.dataset.points = x.length;
    this.draw(true);
  }

  // curves: [{label, parameters}], drawn in that order.
  setCurves(curves) {
    const rebuild = curves.map((c) => c.label).join("\n") !== this.curves.map((c) => c.label).join("\n");
    this.curves = curves;
    if (this.frame != null && !rebuild) return;
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.draw(rebuild);
    });
  }

  draw(rebuild) {
    if (!this.points) return;
    const [px, py] = this.points;
    const lo = px[0];
    const hi = px[px.length - 1];
    const tables = [[px, py], ...this.curves.map((c) => curve(c.parameters, lo, hi))];
    const data = tables.length > 1 ? uPlot.join(tables) : tables[0];
    this.container.dataset.curves = this.curves.length;
    if (this.curves.length) this.container.dataset.curve = "drawn";
    if (this.made && !rebuild) {
      this.made.setData(data);
      return;
    }
    this.made?.destroy();
    this.container.replaceChildren();
    const one = this.curves.length === 1;
    const series = [
      scatter(`data (${fmt(px.length)} points)`, "#6b6b6b", 4),
      ...this.curves.map((c, i) => line(c.label, COLORS[one ? 1 : i % COLORS.length], { width: 2.5 })),
    ];
    this.made = chart(this.container, { xLabel: "x", yLabel: "y", data, series });
  }
}
