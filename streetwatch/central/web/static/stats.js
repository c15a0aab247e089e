// The statistics charts (Chart.js from npm, static/lib): axes with titles, one colour per violation,
// the unreviewed cases as their own bars beside the confirmed ones. The tables under the charts
// are rendered by the server and hold the same numbers.
(function () {
  "use strict";
  const block = document.getElementById("stats-data");
  if (!block || !window.Chart) return;
  const { data, words } = JSON.parse(block.textContent);
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.maintainAspectRatio = false;
  const axis = (title, extra) => Object.assign({ title: { display: true, text: title }, beginAtZero: true }, extra || {});
  const make = (id, config) => {
    const canvas = document.getElementById(id);
    if (canvas) canvas.chart = new Chart(canvas, config);
  };

  make("chart-cases", {
    type: "bar",
    data: {
      labels: data.periods,
      datasets: [
        ...data.violations.map((v) => ({ label: v.name, data: v.counts, backgroundColor: v.colour, stack: "confirmed" })),
        { label: words.unreviewed, data: data.unreviewed, backgroundColor: "#afb8c1", stack: "unreviewed" },
      ],
    },
    options: { scales: { x: axis(words.period, { stacked: true }), y: axis(words.cases, { stacked: true, ticks: { precision: 0 } }) } },
  });
  make("chart-rate", {
    type: "line",
    data: { labels: data.periods, datasets: [{ label: words.rate, data: data.rectified_pct, borderColor: "#1a7f37", backgroundColor: "#1a7f37", spanGaps: true }] },
    options: { scales: { x: axis(words.period), y: axis(words.rate, { max: 100 }) } },
  });
  make("chart-hours", {
    type: "bar",
    data: { labels: data.periods, datasets: [{ label: words.hours, data: data.hours_to_close, backgroundColor: "#8250df" }] },
    options: { scales: { x: axis(words.period), y: axis(words.hours) } },
  });
  ["merchants", "roads", "areas"].forEach((key) => make("chart-" + key, {
    type: "bar",
    data: {
      labels: data[key].map((r) => r[0]),
      datasets: [
        { label: words.confirmed, data: data[key].map((r) => r[1]), backgroundColor: "#0969da" },
        { label: words.unreviewed, data: data[key].map((r) => r[2]), backgroundColor: "#afb8c1" },
      ],
    },
    options: { indexAxis: "y", scales: { x: axis(words.cases, { ticks: { precision: 0 } }), y: { ticks: { autoSkip: false } } } },
  }));
})();
