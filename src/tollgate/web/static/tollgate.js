// Copy buttons, confirmations and the usage chart; everything else works without JavaScript.
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
      `${data.tool} → ${outcome} (${data.latency_ms} ms, ${data.credits ?? 0} credits)`);
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
