// The operator console: plain modules, no build step. The admin token lives in this tab's
// sessionStorage and goes out only as the Authorization header of the console's own requests.

const TOKEN_KEY = "bevy-chat-admin-token";
const CHART_POINTS = 300; // five minutes at one overview a second

const $ = (id) => document.getElementById(id);
let stream = null; // AbortController of the live overview
const series = { connections: [], messages: [], deliveries: [] };
let auditBefore = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** A request to the admin API: JSON back, or an Error saying what went wrong. */
async function api(path, options = {}) {
  const headers = {
    Authorization: `Bearer ${token()}`,
    "X-Admin-Client": "console",
  };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.body === undefined ? "GET" : "POST",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: options.signal,
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const reason = body && body.error ? body.error : `HTTP ${response.status}`;
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return body;
}

function toast(text, bad = false) {
  const element = $("toast");
  element.textContent = text;
  element.className = bad ? "error" : "ok";
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (element.hidden = true), 6000);
}

function show(view) {
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== view;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.view === view);
  }
  if (view === "audit") loadAudit(null);
  if (view === "channels") loadChannels();
}

function route() {
  if (!token()) {
    $("nav").hidden = true;
    show("sign-in");
    return;
  }
  $("nav").hidden = false;
  const view = location.hash.replace("#", "") || "overview";
  show(["overview", "channels", "players", "audit"].includes(view) ? view : "overview");
}

async function signIn(event) {
  event.preventDefault();
  const given = $("token").value.trim();
  $("sign-in-error").textContent = "";
  sessionStorage.setItem(TOKEN_KEY, given);
  try {
    await api("/admin/overview");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("sign-in-error").textContent =
      error.status === 401 ? `Not signed in: ${error.message}.` : `Cannot reach the server: ${error.message}.`;
    return;
  }
  $("token").value = "";
  location.hash = "#overview";
  route();
  watch();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  if (stream) stream.abort();
  stream = null;
  location.hash = "";
  route();
}

/**
 * Reads server-sent events from `path` through fetch (so the token goes as a header), calling
 * `onEvent(name, data)` for each, `onOpen()` once connected; reconnects until `controller` is
 * aborted. `onState(text)` hears of outages.
 */
async function events(path, controller, onEvent, onOpen, onState) {
  while (!controller.signal.aborted && token()) {
    try {
      const response = await fetch(typeof path === "function" ? path() : path, {
        headers: { Authorization: `Bearer ${token()}`, "X-Admin-Client": "console" },
        signal: controller.signal,
      });
      if (response.status === 401) {
        signOut();
        $("sign-in-error").textContent = "Signed out: the admin token is no longer valid.";
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      onOpen();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end).split("\n");
          buffer = buffer.slice(end + 2);
          const name = block.find((line) => line.startsWith("event: "))?.slice(7) ?? "message";
          const data = block
            .filter((line) => line.startsWith("data: "))
            .map((line) => line.slice(6))
            .join("\n");
          if (data) onEvent(name, JSON.parse(data));
        }
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      onState(`Reconnecting (${error.message})…`);
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** Follows /admin/stream: the overview, live. */
function watch() {
  if (stream) stream.abort();
  stream = new AbortController();
  events(
    "/admin/stream",
    stream,
    (name, data) => {
      if (name === "recent") recent(data);
      if (name === "overview") render(data);
    },
    () => ($("stream-state").textContent = "Live"),
    (text) => ($("stream-state").textContent = text),
  );
}

function render(overview) {
  const totals = overview.totals;
  $("total-nodes").textContent = totals.nodes;
  $("total-connections").textContent = totals.connections;
  $("total-messages").textContent = totals.messages_per_second.toFixed(1);
  $("total-deliveries").textContent = totals.deliveries_per_second.toFixed(0);
  $("total-ready").textContent = `${totals.engines_ready} / ${totals.nodes}`;
  $("total-ready").classList.toggle("bad", totals.engines_ready < totals.nodes);
  push(series.connections, totals.connections);
  push(series.messages, totals.messages_per_second);
  push(series.deliveries, totals.deliveries_per_second / 10);
  chart($("chart-connections"), [[series.connections, "#4aa3ff"]]);
  chart($("chart-rates"), [
    [series.messages, "#54d18c"],
    [series.deliveries, "#f0b84a"],
  ]);
  const rows = overview.nodes.map((node) => {
    const refusals = Object.entries({ ...node.refusals.errors, ...node.refusals.closes, ...node.refusals.limits })
      .filter(([, count]) => count > 0)
      .map(([reason, count]) => `${reason} ${count}`)
      .join(", ");
    return row([
      node.node,
      node.version,
      duration(node.sent_ms - node.started_ms),
      node.connections,
      node.channels,
      node.messages_per_second.toFixed(1),
      node.deliveries_per_second.toFixed(0),
      node.engine_ready ? "ready" : "UNREACHABLE",
      refusals || "none",
    ]);
  });
  $("nodes").tBodies[0].replaceChildren(...rows);
}

/** The server's samples of the last minutes: the charts start from them. */
function recent(samples) {
  series.connections = samples.map((s) => s.connections);
  series.messages = samples.map((s) => s.messages_per_second);
  series.deliveries = samples.map((s) => s.deliveries_per_second / 10);
}

function push(series, value) {
  series.push(value);
  if (series.length > CHART_POINTS) series.shift();
}

/** Draws lines of `series` ([values, colour]) scaled to their common maximum. */
function chart(canvas, series) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  const max = Math.max(1, ...series.flatMap(([values]) => values));
  context.fillStyle = "#8a94a6";
  context.font = "11px sans-serif";
  context.fillText(max.toFixed(max < 10 ? 1 : 0), 4, 12);
  for (const [values, colour] of series) {
    context.strokeStyle = colour;
    context.lineWidth = 2;
    context.beginPath();
    values.forEach((value, i) => {
      const x = width - (values.length - 1 - i) * (width / (CHART_POINTS - 1));
      const y = height - 4 - (value / max) * (height - 20);
      if (i === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.stroke();
  }
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} d`;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = String(cell);
    tr.append(td);
  }
  return tr;
}

/** Asks before acting; resolves true when confirmed. */
function confirmed(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function act(event) {
  event.preventDefault();
  const user = $("action-user").value.trim();
  const action = $("action-kind").value;
  const seconds = $("action-seconds").value;
  const reason = $("action-reason").value.trim();
  const body = { user_id: user };
  const limited = action === "mute" || action === "ban";
  if (limited && seconds) body.seconds = Number(seconds);
  if (reason && action !== "unmute" && action !== "unban") body.reason = reason;
  const length = limited ? (seconds ? ` for ${$("action-seconds").selectedOptions[0].text}` : " until lifted") : "";
  if (!(await confirmed(`${action} ${user}${length}${reason ? ` (${reason})` : ""}?`))) return;
  try {
    const reply = await api(`/admin/${action}`, { body });
    toast(`Done: ${action} ${user}` + (reply.audit_error ? ` (not audited: ${reply.audit_error})` : ""));
  } catch (error) {
    toast(`Not done: ${error.message}`, true);
  }
}

async function broadcast(event) {
  event.preventDefault();
  const message = $("broadcast-text").value.trim();
  const channel = $("broadcast-channel").value.trim();
  const to = channel ? `the members of #${channel}` : "everyone";
  if (!(await confirmed(`Send to ${to}: “${message}”?`))) return;
  try {
    await api("/admin/broadcast", { body: channel ? { message, channel } : { message } });
    toast(`Broadcast sent to ${to}`);
    $("broadcast-text").value = "";
  } catch (error) {
    toast(`Not sent: ${error.message}`, true);
  }
}

async function loadAudit(before) {
  const query = before ? `?limit=50&before=${encodeURIComponent(before)}` : "?limit=50";
  try {
    const page = await api(`/admin/audit${query}`);
    const rows = page.entries.map((entry) =>
      row([
        new Date(entry.ts).toLocaleString(),
        entry.action,
        entry.target,
        entry.reason ?? "",
        entry.seconds ? duration(entry.seconds * 1000) : "",
        entry.result,
        `${entry.via} ${entry.address}`,
      ]),
    );
    $("audit-table").tBodies[0].replaceChildren(...rows);
    auditBefore = page.next ?? null;
    $("audit-older").disabled = !auditBefore;
  } catch (error) {
    toast(`Cannot read the audit log: ${error.message}`, true);
  }
}

let channelStream = null; // AbortController of the channel being watched
let channelOldest = null;

async function loadChannels(event) {
  if (event) event.preventDefault();
  const query = $("channel-query").value.trim();
  try {
    const list = await api(`/admin/channels?q=${encodeURIComponent(query)}`);
    const channels = list.channels;
    // Only the busiest channels are listed: any other is opened by its exact name.
    if (query && !channels.some((channel) => channel.name === query)) {
      channels.push({ name: query, members: "–", messages_per_second: 0, nodes: "–" });
    }
    const rows = channels.map((channel) => {
      const tr = row([channel.name, channel.members, channel.messages_per_second.toFixed(1), channel.nodes]);
      const open = document.createElement("button");
      open.type = "button";
      open.textContent = "Open";
      open.dataset.channel = channel.name;
      open.addEventListener("click", () => openChannel(channel.name));
      const td = document.createElement("td");
      td.append(open);
      tr.append(td);
      return tr;
    });
    $("channels-table").tBodies[0].replaceChildren(...rows);
  } catch (error) {
    toast(`Cannot list channels: ${error.message}`, true);
  }
}

function messageItem(message) {
  const li = document.createElement("li");
  li.dataset.id = message.id;
  const time = document.createElement("time");
  time.textContent = new Date(message.ts).toLocaleTimeString();
  const who = document.createElement("strong");
  who.textContent = message.username;
  who.title = message.user_id;
  const text = document.createElement("span");
  text.textContent = message.message;
  li.append(time, " ", who, " ", text);
  return li;
}

async function openChannel(name) {
  if (channelStream) channelStream.abort();
  // Taken now: a second click while this one loads makes this one stale.
  const controller = new AbortController();
  channelStream = controller;
  const path = `/admin/channels/${encodeURIComponent(name)}`;
  let last = null; // the newest message shown: a reconnect resumes after it
  try {
    const channel = await api(path);
    if (channelStream !== controller) return;
    $("channel-panel").hidden = false;
    $("channel-title").textContent = `#${channel.name}`;
    $("channel-members").replaceChildren(
      ...channel.members.map((member) => {
        const li = document.createElement("li");
        li.textContent = `${member.username ?? "(no name)"} · ${member.user_id}`;
        return li;
      }),
    );
    $("channel-messages").replaceChildren(...channel.messages.map(messageItem));
    channelOldest = channel.messages[0]?.id ?? null;
    last = channel.messages.at(-1)?.id ?? "0-0";
    $("channel-older").disabled = !channel.more;
    $("channel-older").dataset.channel = channel.name;
  } catch (error) {
    toast(`Cannot open #${name}: ${error.message}`, true);
    return;
  }
  events(
    () => `${path}/stream` + (last ? `?after=${encodeURIComponent(last)}` : ""),
    controller,
    (event, data) => {
      if (event === "message") {
        $("channel-messages").append(messageItem(data));
        $("channel-state").textContent = "Live";
        last = data.id;
      }
      if (event === "unavailable") {
        $("channel-state").textContent = `Cannot read the channel (${data.error}); still trying…`;
      }
      if (event === "gap") {
        const li = document.createElement("li");
        li.className = "error";
        li.textContent = "Some messages were missed here (no longer kept, or too many at once).";
        $("channel-messages").append(li);
      }
    },
    () => ($("channel-state").textContent = "Live"),
    (text) => ($("channel-state").textContent = text),
  );
}

async function olderMessages() {
  const name = $("channel-older").dataset.channel;
  if (!name || !channelOldest) return;
  try {
    const page = await api(
      `/admin/channels/${encodeURIComponent(name)}/history?before=${encodeURIComponent(channelOldest)}`,
    );
    $("channel-messages").prepend(...page.messages.map(messageItem));
    channelOldest = page.messages[0]?.id ?? channelOldest;
    $("channel-older").disabled = !page.more;
  } catch (error) {
    toast(`Cannot page back: ${error.message}`, true);
  }
}

async function findPlayers(event) {
  event.preventDefault();
  const query = $("player-query").value.trim();
  try {
    const found = await api(`/admin/players?q=${encodeURIComponent(query)}`);
    $("player-note").textContent = found.name_search
      ? `${found.players.length} found`
      : "This engine finds players by user id only.";
    $("player-results").replaceChildren(
      ...found.players.map((player) => {
        const li = document.createElement("li");
        const pick = document.createElement("button");
        pick.type = "button";
        pick.textContent = `${player.name ?? "(no name)"} · ${player.user_id}`;
        pick.addEventListener("click", () => showPlayer(player.user_id));
        li.append(pick);
        return li;
      }),
    );
  } catch (error) {
    toast(`Cannot search: ${error.message}`, true);
  }
}

async function showPlayer(user) {
  try {
    const player = await api(`/admin/players/${encodeURIComponent(user)}`);
    const sanction = (s) =>
      s ? `${s.reason || "no reason"} (${s.until_ms ? `until ${new Date(s.until_ms).toLocaleString()}` : "until lifted"})` : "no";
    const facts = [
      ["User id", player.user_id],
      ["Name", player.name ?? "(none)"],
      ["Names before", player.names.slice(1).map((n) => `${n.name} (${new Date(n.ts).toLocaleString()})`).join(", ") || "none"],
      ["Muted", sanction(player.muted)],
      ["Banned", sanction(player.banned)],
      ["Blocks", player.blocks.length ? player.blocks.join(", ") : "nobody"],
      ["Online on", player.online_nodes.length ? player.online_nodes.join(", ") : "no node (offline)"],
      ["Channels", player.channels.join(", ") || "none"],
      ["Connections (this node)", player.connections_here],
    ];
    $("player-facts").replaceChildren(
      ...facts.flatMap(([term, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = term;
        const dd = document.createElement("dd");
        dd.textContent = String(value);
        return [dt, dd];
      }),
    );
    $("player-title").textContent = player.name ?? player.user_id;
    $("player-detail").hidden = false;
    $("action-user").value = player.user_id;
  } catch (error) {
    toast(`Cannot read the player: ${error.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("channel-search").addEventListener("submit", loadChannels);
  $("channel-older").addEventListener("click", olderMessages);
  $("player-search").addEventListener("submit", findPlayers);
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("action-form").addEventListener("submit", act);
  $("broadcast-form").addEventListener("submit", broadcast);
  $("audit-newest").addEventListener("click", () => loadAudit(null));
  $("audit-older").addEventListener("click", () => loadAudit(auditBefore));
  window.addEventListener("hashchange", route);
  route();
  if (token()) watch();
});
