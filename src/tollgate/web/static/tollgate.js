// Copy buttons, confirmations, the usage chart and the dashboard's live panel; everything else
// works without JavaScript.

// A count and its noun: "1 call", "2 calls" (as the pages' `counted` filter writes them).
function counted(count, noun) {
  return `${count} ${Math.abs(count) === 1 ? noun : `${noun}s`}`;
}

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent.trim();
  await navigator.clipboard.writeText(text);
  const status = button.parentElement.querySelector(".copied");
  if (status) status.textContent = "Copied";
});

// A form with data-confirm asks first (deleting, revoking): without JavaScript it just posts.
document.addEventListener("submit", (submitted) => {
  const question = submitted.target.dataset && submitted.target.dataset.confirm;
  if (question && !window.confirm(question)) submitted.preventDefault();
});

window.addEventListener("load", () => {
  const canvas = document.getElementById("usage-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const data = JSON.parse(canvas.dataset.chart);
  new Chart(canvas, {
    type: "bar",
    data: { labels: data.labels, datasets: [{ label: "Calls", data: data.calls, backgroundColor: "#0b5cad" }] },
    options: { animation: false, plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
});

// The chat playground: send a message, read the answer's server-sent events as they come.
function line(list, kind, text) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text;
  list.appendChild(item);
  return item;
}

function show(list, state, event, data) {
  if (event === "token") {
    state.answer = state.answer || line(list, "assistant", "");
    state.answer.textContent += data.content;
  } else if (event === "tool_start") {
    state.answer = null;
    line(list, "tool", `Calling ${data.tool} with ${JSON.stringify(data.arguments)}`);
  } else if (event === "tool_end" || event === "tool_error") {
    const outcome = event === "tool_end" ? data.result : `failed: ${data.error}`;
    const item = line(list, event === "tool_end" ? "tool" : "tool failed",
      `${data.tool} → ${outcome} (${data.latency_ms} ms, ${counted(data.credits ?? 0, "credit")})`);
    item.dataset.tool = data.tool;
  } else if (event === "final") {
    if (!state.answer) line(list, "assistant", data.text);
    state.answer = null;
  } else if (event === "error") {
    line(list, "failed", data.error);
  }
}

document.addEventListener("submit", async (submitted) => {
  const form = submitted.target;
  if (form.id !== "chat-form") return;
  submitted.preventDefault();
  const list = document.getElementById("transcript");
  const box = form.querySelector("textarea");
  const message = box.value.trim();
  if (!message) return;
  line(list, "you", message);
  box.value = "";
  const response = await fetch(form.dataset.send, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": form.dataset.csrf },
    body: JSON.stringify({ message }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    line(list, "failed", (body.detail && body.detail.message) || `HTTP ${response.status}`);
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const state = { answer: null };
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block);
      const data = /^data: (.*)$/m.exec(block);
      if (event && data) show(list, state, event[1], JSON.parse(data[1]));
    }
  }
});

// The dashboard's live panel: the live feed's per-second aggregates, drawn with Chart.js when it
// was installed and always written out as text. The socket opens with a one-minute ticket the
// page asks for with its session (whose cookie scripts cannot read), sent as a subprotocol so
// that no address with a token in it lands in an access log.
const FEED_SECONDS = 120; // seconds the chart shows
const FEED_MINUTE = 60; // seconds the text figures add up
const FEED_SPEAK_MS = 10000; // the polite summary changes at most this often
const FEED_RETRY_MS = [1000, 2000, 5000, 10000, 30000]; // waits before reconnecting, in turn

function feedChart(canvas) {
  if (typeof Chart === "undefined") {
    canvas.closest("#feed-chart-box").hidden = true; // the figures say it all without it
    return null;
  }
  const line = (label, colour, dash) => ({
    label, data: [], borderColor: colour, backgroundColor: colour, borderDash: dash,
    borderWidth: 2, pointRadius: 0, pointStyle: "line",
  });
  return new Chart(canvas, {
    type: "line",
    data: { labels: [], datasets: [line("Calls per second", "#0b5cad", []), line("Errors per second", "#a4161a", [6, 4])] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { labels: { usePointStyle: true } } },
      scales: {
        x: {
          title: { display: true, text: "UTC" },
          ticks: {
            autoSkip: false,
            maxRotation: 0,
            // every 30 seconds back from the latest, at the same places whatever the width
            callback(value, index) {
              return (FEED_SECONDS - 1 - index) % 30 === 0 ? this.getLabelForValue(value) : null;
            },
          },
        },
        y: { beginAtZero: true, suggestedMax: 4, ticks: { precision: 0 } },
      },
    },
  });
}

function startFeed(panel) {
  const seconds = []; // the aggregates of the last FEED_SECONDS seconds, oldest first
  const canvas = panel.querySelector("#feed-chart");
  const chart = feedChart(canvas);
  const state = panel.querySelector("#feed-state");
  const summary = panel.querySelector("#feed-summary");
  let spokenAt = 0;
  let retries = 0;

  function figure(id, value, text) {
    const element = panel.querySelector(id);
    element.dataset.value = value;
    element.textContent = text;
  }

  // The chart always spans FEED_SECONDS: the seconds before the page connected are gaps.
  function draw(chart) {
    const clock = (ms) => new Date(ms).toISOString().slice(11, 19);
    const gap = FEED_SECONDS - seconds.length;
    const first = seconds[0].at.getTime();
    const before = Array.from({ length: gap }, (_, k) => clock(first - (gap - k) * 1000));
    chart.data.labels = before.concat(seconds.map((s) => clock(s.at.getTime())));
    chart.data.datasets[0].data = Array(gap).fill(null).concat(seconds.map((s) => s.events));
    chart.data.datasets[1].data = Array(gap).fill(null).concat(seconds.map((s) => s.errors));
    chart.update();
  }

  function show() {
    const minute = seconds.slice(-FEED_MINUTE);
    const sum = (key) => minute.reduce((total, second) => total + (second[key] || 0), 0);
    // the median of the latest second with calls (the average from a feed without medians)
    const ms = minute.map((s) => s.p50_latency_ms ?? s.avg_latency_ms).filter((v) => v != null).at(-1);
    const latency = ms === undefined ? "–" : `${ms.toFixed(1)} ms`;
    const [calls, errors, credits, rate] = [sum("events"), sum("errors"), sum("credits"), minute.at(-1).events];
    figure("#feed-calls", calls, String(calls));
    figure("#feed-rate", rate, String(rate));
    figure("#feed-errors", errors, String(errors));
    figure("#feed-latency", ms ?? "", latency);
    figure("#feed-credits", credits, String(credits));
    canvas.dataset.calls = seconds.map((s) => s.events).join(",");
    canvas.dataset.errors = seconds.map((s) => s.errors).join(",");
    if (chart) draw(chart);
    const said = `Last minute: ${counted(calls, "call")}, ${counted(errors, "error")}, `
      + `${counted(credits, "credit")}; now ${counted(rate, "call")} a second; median latency ${latency}.`;
    if (Date.now() - spokenAt >= FEED_SPEAK_MS && summary.textContent !== said) {
      summary.textContent = said;
      spokenAt = Date.now();
    }
  }

  function later() {
    const wait = FEED_RETRY_MS[Math.min(retries, FEED_RETRY_MS.length - 1)];
    retries += 1;
    state.textContent = `Disconnected: trying again in ${Math.round(wait / 1000)} s.`;
    window.setTimeout(open, wait);
  }

  async function ticket() {
    const response = await fetch(panel.dataset.ticket, { headers: { Accept: "application/json" }, cache: "no-store" });
    const json = (response.headers.get("content-type") || "").startsWith("application/json");
    if (response.ok && json) return (await response.json()).ticket;
    if (response.status === 403 || (response.ok && !json)) return null; // no right, or signed out
    throw new Error(`HTTP ${response.status}`);
  }

  async function open() {
    state.textContent = "Connecting to the live feed…";
    let pass;
    try {
      pass = await ticket();
    } catch {
      later();
      return;
    }
    if (!pass) {
      state.textContent = "Live figures stopped: sign in again and reload the page.";
      return;
    }
    const address = new URL(panel.dataset.feed, window.location.href);
    address.protocol = address.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(address, ["tollgate.live", `bearer.${pass}`]);
    socket.addEventListener("message", (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "subscribed") {
        retries = 0;
        state.textContent = "Live: updated every second.";
      } else if (message.type === "aggregate") {
        seconds.push({ at: new Date(), ...message });
        if (seconds.length > FEED_SECONDS) seconds.shift();
        show();
      }
    });
    socket.addEventListener("close", (closed) => {
      if (closed.code === 1008) state.textContent = "The live feed refused this page: sign in again and reload it.";
      else later();
    });
  }

  open();
}

document.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("live-feed");
  if (panel) startFeed(panel);
});
