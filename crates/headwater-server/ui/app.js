// Headwater's web UI: plain modules of the browser, no build step. It reads
// the same public API as the CLI. Text from the API is only ever set as
// textContent (never parsed as HTML).
'use strict';

const FINAL = ['COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED'];
const STATES = ['SCHEDULED', 'PENDING', 'RUNNING', 'COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED', 'PAUSED', 'CANCELLING'];
let live = null; // the current page's subscription (an AbortController)

// ---- helpers ---------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function link(href, text) { return h('a', { href, 'data-nav': '' }, text); }

function badge(state) {
  if (!state) return '';
  const cls = state.name === 'Late' ? 's-Late' : 's-' + state.type;
  return h('span', { class: 'badge ' + cls, title: state.message || '' }, state.name);
}

function when(t) { return t ? new Date(t).toLocaleString() : '—'; }

function duration(a, b) {
  if (!a) return '—';
  const ms = (b ? new Date(b) : new Date()) - new Date(a);
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return s + 's';
  if (s < 3600) return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  return Math.floor(s / 3600) + 'h ' + Math.floor((s % 3600) / 60) + 'm';
}

/// `classes[i]`, if given, is row i's class.
function table(headers, rows, classes = []) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows.map((r, i) => h('tr', { class: classes[i] || '' }, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'Nothing yet.')))));
}

function json(v) { return h('pre', {}, JSON.stringify(v, null, 2)); }

class ApiError extends Error { constructor(status, detail) { super(detail); this.status = status; } }

async function api(path, opts = {}) {
  const headers = { 'content-type': 'application/json' };
  const key = sessionStorage.getItem('headwater-api-key');
  if (key) headers.authorization = 'Bearer ' + key;
  const resp = await fetch('/api' + path, {
    method: opts.method || (opts.body ? 'POST' : 'GET'),
    headers,
    body: opts.body ? JSON.stringify(opts.body) : undefined,
  });
  if (resp.status === 204) return null;
  const text = await resp.text();
  const body = text ? JSON.parse(text) : null;
  if (!resp.ok) throw new ApiError(resp.status, (body && body.detail) || resp.statusText);
  return body;
}

/// Reads server-sent events (with fetch, which, unlike EventSource, can send
/// the API key); calls `onEvent` for each event named `name`.
async function follow(path, name, onEvent, signal) {
  const headers = {};
  const key = sessionStorage.getItem('headwater-api-key');
  if (key) headers.authorization = 'Bearer ' + key;
  const resp = await fetch('/api' + path, { headers, signal });
  if (!resp.ok) throw new ApiError(resp.status, resp.statusText);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (new RegExp('^event: ?' + name + '$', 'm').test(block)) onEvent();
    }
  }
}

/// Keeps a page current: `refresh` runs whenever the stream announces a
/// change (one at a time; changes meanwhile are caught by the next one),
/// reconnecting after errors, until the page is left. Resolves once the
/// stream ends on its own.
function keepLive(path, name, refresh) {
  const controller = new AbortController();
  live = controller;
  let busy = false;
  let again = false;
  const onEvent = async () => {
    if (busy) { again = true; return; }
    busy = true;
    do { again = false; await refresh().catch(() => {}); } while (again && !controller.signal.aborted);
    busy = false;
  };
  return (async () => {
    while (!controller.signal.aborted) {
      try { await follow(path, name, onEvent, controller.signal); return; }
      catch (e) { if (controller.signal.aborted) return; await new Promise((r) => setTimeout(r, 2000)); }
    }
  })();
}

const runs = (filter) => api('/flow_runs/filter', { body: Object.assign({ limit: 50 }, filter) });

// ---- pages -----------------------------------------------------------------

async function dashboard(main) {
  const since = new Date(Date.now() - 86400e3);
  since.setMinutes(0, 0, 0);
  const until = new Date(since.getTime() + 25 * 3600e3);
  const chart = h('div');
  const cards = h('div', { class: 'cards' });
  const failedBox = h('div');
  const lateBox = h('div');
  const recentBox = h('div');
  const poolsBox = h('div');
  main.replaceChildren(h('h1', {}, 'Dashboard'),
    h('h2', {}, 'Runs of the last 24 hours by state'), cards, chart,
    h('h2', {}, 'Failed runs'), failedBox, h('h2', {}, 'Late runs'), lateBox,
    h('h2', {}, 'Work pools'), poolsBox, h('h2', {}, 'Recent activity'), recentBox);
  async function refresh() {
    const q = new URLSearchParams({ since: since.toISOString(), until: until.toISOString(), buckets: 25 });
    const [history, failed, late, recent, pools, workers] = await Promise.all([
      api('/flow_runs/history?' + q), runs({ states: ['FAILED', 'CRASHED'], limit: 10 }), runs({ state_names: ['Late'], limit: 10 }),
      runs({ limit: 10 }), api('/work_pools'), api('/workers'),
    ]);
    const totals = {};
    for (const b of history) for (const [s, n] of Object.entries(b.counts)) totals[s] = (totals[s] || 0) + n;
    cards.replaceChildren(...STATES.filter((s) => totals[s]).map((s) =>
      h('a', { class: 'card', href: '/runs?state=' + s + '&since=' + encodeURIComponent(since.toISOString()), 'data-nav': '' },
        h('span', { class: 'badge s-' + s }, s), h('b', {}, totals[s]))));
    chart.replaceChildren(Object.keys(totals).length ? historyChart(history) : h('p', { class: 'muted' }, 'No runs in the last 24 hours.'));
    failedBox.replaceChildren(runTable(failed));
    lateBox.replaceChildren(runTable(late));
    recentBox.replaceChildren(runTable(recent));
    const now = Date.now();
    poolsBox.replaceChildren(table(['Pool', 'Type', 'Status', 'Workers online', 'Last heartbeat'], pools.map((p) => {
      const mine = workers.filter((w) => w.work_pool === p.name);
      const online = mine.filter((w) => now - new Date(w.last_heartbeat) < 30e3).length;
      const last = mine.map((w) => w.last_heartbeat).sort().pop();
      return [link('/work-pools', p.name), p.kind, p.paused ? 'paused' : (online ? 'ready' : 'not ready'), `${online} of ${mine.length}`, when(last)];
    })));
  }
  await refresh();
  keepLive('/flow_runs/events', 'changed', refresh);
}

/// Stacked bars, one per bucket, of runs by state (the largest bucket is
/// full height); each bar's title and an accessible label give the counts.
function historyChart(history) {
  const max = Math.max(1, ...history.map((b) => Object.values(b.counts).reduce((x, y) => x + y, 0)));
  const box = h('div', { class: 'chart', role: 'img', 'aria-label': 'Runs per hour by state' });
  for (const b of history) {
    const total = Object.values(b.counts).reduce((x, y) => x + y, 0);
    const words = STATES.filter((s) => b.counts[s]).map((s) => `${b.counts[s]} ${s.toLowerCase()}`).join(', ');
    const col = h('div', { class: 'c-col', title: `${new Date(b.start).toLocaleString()}: ${total ? words : 'no runs'}` });
    for (const s of STATES) {
      if (!b.counts[s]) continue;
      const seg = h('div', { class: 'c-seg s-' + s });
      seg.style.height = ((b.counts[s] / max) * 100).toFixed(2) + '%';
      col.append(seg);
    }
    box.append(col);
  }
  return h('div', {}, box, h('div', { class: 'c-axis muted' },
    h('span', {}, new Date(history[0].start).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
    h('span', {}, 'now')));
}

function runTable(list) {
  return table(['Run', 'Flow', 'State', 'Started', 'Duration', 'Tags'], list.map((r) => [
    link('/runs/' + r.id, r.name), r.flow_name, badge(r.state), when(r.start_time),
    duration(r.start_time, r.end_time), (r.tags || []).join(', '),
  ]));
}

const RANGES = [['1h', 'Last hour', 3600e3], ['24h', 'Last 24 hours', 86400e3], ['7d', 'Last 7 days', 7 * 86400e3], ['30d', 'Last 30 days', 30 * 86400e3]];

/// `datetime-local` input value (local time) ↔ ISO timestamps.
function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
}

async function flowRuns(main, params) {
  const [flows, deployments] = await Promise.all([api('/flows'), api('/deployments')]);
  const filter = { limit: 50 };
  const state = params.get('state');
  if (state === 'Late') filter.state_names = ['Late'];
  else if (state) filter.states = [state];
  if (params.get('flow')) filter.flow_name = params.get('flow');
  if (params.get('deployment')) filter.deployment_id = params.get('deployment');
  if (params.get('q')) filter.name = params.get('q');
  if (params.get('tag')) filter.tags = params.get('tag').split(',').map((t) => t.trim()).filter(Boolean);
  const range = RANGES.find((r) => r[0] === params.get('range'));
  if (params.get('since')) filter.since = new Date(params.get('since')).toISOString();
  if (params.get('until')) filter.until = new Date(params.get('until')).toISOString();
  if (params.get('before_created')) filter.before = { created: params.get('before_created'), id: params.get('before_id') };
  const select = (name, label, options) => h('label', {}, label, h('select', { name },
    h('option', { value: '' }, 'any'),
    options.map(([v, t]) => h('option', { value: v, selected: params.get(name) === v }, t))));
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) {
      if (!v) continue;
      // Times typed in local time travel as ISO timestamps.
      q.set(k, k === 'since' || k === 'until' ? new Date(v).toISOString() : v);
    }
    go('/runs?' + q);
  } },
  h('label', {}, 'Name', h('input', { type: 'search', name: 'q', value: params.get('q') || '', placeholder: 'contains…' })),
  select('state', 'State', STATES.map((s) => [s, s]).concat([['Late', 'Late']])),
  select('flow', 'Flow', flows.map((f) => [f.name, f.name])),
  select('deployment', 'Deployment', deployments.map((d) => [d.id, d.name])),
  h('label', {}, 'Tags', h('input', { type: 'text', name: 'tag', value: params.get('tag') || '', placeholder: 'a, b', size: 10 })),
  select('range', 'Created', RANGES.map(([v, t]) => [v, t])),
  h('label', {}, 'From', h('input', { type: 'datetime-local', name: 'since', value: localInput(params.get('since')) })),
  h('label', {}, 'To', h('input', { type: 'datetime-local', name: 'until', value: localInput(params.get('until')) })),
  h('button', { type: 'submit' }, 'Filter'),
  params.toString() ? link('/runs', 'Clear') : '');
  const body = h('div');
  const pager = h('div', { class: 'pager' });
  main.replaceChildren(h('h1', {}, 'Flow runs'), form, body, pager);
  async function refresh() {
    // A range slides with the clock; explicit times win.
    if (range && !params.get('since')) filter.since = new Date(Date.now() - range[2]).toISOString();
    const list = await runs(filter);
    body.replaceChildren(runTable(list));
    pager.replaceChildren();
    if (filter.before) pager.append(link('/runs?' + new URLSearchParams([...params].filter(([k]) => !k.startsWith('before_'))), '← Newest'));
    if (list.length === 50) {
      const last = list[list.length - 1];
      const q = new URLSearchParams(params);
      q.set('before_created', last.created);
      q.set('before_id', last.id);
      pager.append(link('/runs?' + q, 'Older runs →'));
    }
  }
  await refresh();
  // The first page follows new runs and state changes; older pages hold still.
  if (!filter.before) keepLive('/flow_runs/events', 'changed', refresh);
}

async function flowRun(main, id) {
  const run = await api('/flow_runs/' + id);
  const logsBox = h('pre', { class: 'logs', 'aria-live': 'polite' });
  const level = h('select', { 'aria-label': 'Lowest log level' }, ['DEBUG', 'INFO', 'WARNING', 'ERROR'].map((l) =>
    h('option', { value: l, selected: l === 'INFO' }, l)));
  const search = h('input', { type: 'search', placeholder: 'Search logs', 'aria-label': 'Search logs' });
  const status = h('p', { class: 'err', role: 'status' });
  let logs = [];
  let afterId = 0;
  let following = false;
  const order = ['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'];
  const showLogs = () => {
    const min = order.indexOf(level.value);
    const q = search.value.toLowerCase();
    logsBox.replaceChildren(...logs.filter((l) => order.indexOf(l.level) >= min && (!q || l.message.toLowerCase().includes(q)))
      .map((l) => h('div', { class: 'lvl-' + l.level }, `${new Date(l.timestamp).toLocaleTimeString()} ${l.level.padEnd(8)} ${l.message}`)));
  };
  level.onchange = showLogs;
  search.oninput = showLogs;
  const act = (verb) => async () => {
    try { await api(`/flow_runs/${id}/${verb}`, { method: 'POST' }); status.textContent = ''; refresh(); }
    catch (e) { status.textContent = e.message; }
  };
  const header = h('div');
  const history = h('div');
  const timeline = h('div');
  const related = h('div');
  main.replaceChildren(header, status, h('h2', {}, 'Timeline'), timeline, h('h2', {}, 'Logs'),
    h('div', { class: 'actions' }, level, search), logsBox, history, related);
  async function refresh() {
    const [r, bars, states, newLogs, children, artifacts, written] = await Promise.all([
      api('/flow_runs/' + id), api(`/flow_runs/${id}/timeline`), api('/states/' + id),
      api('/logs/filter', { body: { flow_run_id: id, after_id: afterId, limit: 5000 } }),
      runs({ parent_flow_run_id: id, limit: 1000 }), api('/artifacts/filter', { body: { flow_run_id: id } }),
      api('/datasets/written_by', { body: { runs: [id] } }),
    ]);
    if (newLogs.length) { logs = logs.concat(newLogs); afterId = newLogs[newLogs.length - 1].id; showLogs(); }
    // Live while the run is not over (the server then ends the stream); a
    // retried or resumed run becomes live again.
    if (!FINAL.includes(r.state.type) && !following) {
      following = true;
      keepLive(`/flow_runs/${id}/events`, 'update', refresh).then(() => { following = false; });
    }
    header.replaceChildren(
      h('h1', {}, r.name, ' ', badge(r.state)),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Flow'), h('dd', {}, r.flow_name),
        h('dt', {}, 'State'), h('dd', {}, r.state.name, r.state.message ? ': ' + r.state.message : ''),
        h('dt', {}, 'Started'), h('dd', {}, when(r.start_time)),
        h('dt', {}, 'Duration'), h('dd', {}, duration(r.start_time, r.end_time)),
        h('dt', {}, 'Attempts'), h('dd', {}, r.run_count),
        r.parent_flow_run_id ? [h('dt', {}, 'Parent'), h('dd', {}, link('/runs/' + r.parent_flow_run_id, 'parent run'))] : '',
        r.partition ? [h('dt', {}, 'Partition'), h('dd', {}, r.partition)] : '',
        r.work_pool ? [h('dt', {}, 'Work pool'), h('dd', {}, r.work_pool)] : ''),
      h('div', { class: 'actions' },
        FINAL.includes(r.state.type) ? '' : h('button', { onclick: act('cancel') }, 'Cancel'),
        r.state.type === 'SCHEDULED' ? h('button', { onclick: act('pause') }, 'Pause') : '',
        r.state.type === 'PAUSED' ? h('button', { onclick: act('resume') }, 'Resume') : '',
        FINAL.includes(r.state.type) && r.work_pool ? h('button', { onclick: act('retry') }, 'Retry') : ''),
      h('h2', {}, 'Parameters'), json(r.parameters));
    // A live update keeps where the reader had scrolled the timeline to.
    const scrolled = timeline.firstChild ? timeline.firstChild.scrollTop : 0;
    timeline.replaceChildren(gantt(r, bars));
    if (scrolled && timeline.firstChild) timeline.firstChild.scrollTop = scrolled;
    history.replaceChildren(h('h2', {}, 'State history'),
      table(['State', 'At', 'Message'], states.map((s) => [badge(s.state), when(s.state.timestamp), s.state.message || ''])));
    // Through h(), which flattens the nested lists (replaceChildren would print them).
    related.replaceChildren(h('div', {},
      written.length ? [h('h2', {}, 'Datasets written'), table(['Dataset', 'Partition', 'Version', 'Rows', 'Written', 'Where'],
        written.map(({ version: v }) => [link('/datasets/' + encodeURIComponent(v.dataset), v.dataset), v.partition,
          v.version, v.rows, when(v.written), v.location]))] : '',
      children.length ? [h('h2', {}, 'Subflow runs'), runTable(children)] : '',
      artifacts.length ? [h('h2', {}, 'Artifacts'), artifacts.map(artifactView)] : ''));
  }
  await refresh();
}

const ROW_PX = 24; // .g-row's height in app.css
const ALL_ROWS_UP_TO = 300;

/// Task runs and subflows (the server's timeline, in start order) as bars
/// on one time axis, coloured by state. Up to a few hundred rows are all
/// drawn; beyond that only the rows in view (and a margin) exist in the
/// page, so 10,000 task runs scroll smoothly.
function gantt(run, bars) {
  const now = Date.now();
  const items = [];
  for (const b of bars) {
    if (!b.start_time) continue;
    const flow = b.kind === 'flow';
    items.push({
      name: flow ? '↳ ' + b.name : b.name, state: { type: b.state_type, name: b.state_name },
      start: b.start_time, end: b.end_time, tries: b.run_count, href: flow ? '/runs/' + b.id : null,
    });
  }
  if (!items.length) return h('p', { class: 'muted' }, 'No task has started.');
  let t0 = Infinity;
  let t1 = run.end_time ? +new Date(run.end_time) : now;
  for (const i of items) {
    i.t0 = +new Date(i.start);
    i.t1 = i.end ? +new Date(i.end) : now;
    t0 = Math.min(t0, i.t0);
    t1 = Math.max(t1, i.t1);
  }
  const span = Math.max(1, t1 - t0);
  const row = (i) => {
    const label = `${i.name}: ${i.state.name}, ${duration(i.start, i.end)}${i.tries > 1 ? `, ${i.tries} attempts` : ''}`;
    const bar = h('div', { class: 'g-bar ' + (i.state.name === 'Late' ? 's-Late' : 's-' + i.state.type), title: label });
    // Through the CSSOM: the page's CSP allows no style attributes.
    bar.style.left = (((i.t0 - t0) / span) * 100).toFixed(3) + '%';
    bar.style.width = Math.max(((i.t1 - i.t0) / span) * 100, 0.2).toFixed(3) + '%';
    return h('div', { class: 'g-row', role: 'listitem', 'aria-label': label },
      h('span', { class: 'g-name' }, i.href ? link(i.href, i.name) : i.name, i.tries > 1 ? ` ×${i.tries}` : ''),
      h('div', { class: 'g-track' }, bar));
  };
  const box = h('div', { class: 'gantt', role: 'list', 'aria-label': `Timeline of ${items.length} task runs and subflows`, tabindex: '0' });
  if (items.length <= ALL_ROWS_UP_TO) {
    const frag = document.createDocumentFragment();
    for (const i of items) frag.append(row(i));
    box.append(frag);
    return box;
  }
  const space = h('div', { class: 'g-space' });
  space.style.height = items.length * ROW_PX + 'px';
  box.append(space);
  let drawn = '';
  const draw = () => {
    const first = Math.max(0, Math.floor(box.scrollTop / ROW_PX) - 20);
    const last = Math.min(items.length, Math.ceil((box.scrollTop + (box.clientHeight || 450)) / ROW_PX) + 20);
    if (drawn === first + ':' + last) return;
    drawn = first + ':' + last;
    const frag = document.createDocumentFragment();
    for (let k = first; k < last; k++) {
      const r = row(items[k]);
      r.classList.add('g-abs');
      r.style.top = k * ROW_PX + 'px';
      frag.append(r);
    }
    space.replaceChildren(frag);
  };
  let pending = false;
  box.addEventListener('scroll', () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  });
  draw();
  // Sized once it is in the page.
  requestAnimationFrame(draw);
  return box;
}

/// Markdown (CommonMark's everyday subset and GitHub tables) as DOM nodes:
/// headings, paragraphs, lists, quotes, code, rules, tables, emphasis,
/// inline code and web links. Never parsed as HTML, so a run cannot put
/// markup or scripts into the page.
function markdown(src) {
  const lines = src.replace(/\r\n?/g, '\n').split('\n');
  const out = document.createDocumentFragment();
  const isBlockStart = (l) => /^(#{1,6}\s|```|\s*[-*+]\s|\s*\d+[.)]\s|\s*>|\s*\|)/.test(l) || /^\s*(-{3,}|\*{3,}|_{3,})\s*$/.test(l);
  const cells = (l) => l.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) { i++; continue; }
    if (/^```/.test(line)) {
      const code = [];
      for (i++; i < lines.length && !/^```/.test(lines[i]); i++) code.push(lines[i]);
      i++;
      out.append(h('pre', {}, h('code', {}, code.join('\n'))));
    } else if ((m = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line))) {
      // Below the page's own h1/h2.
      out.append(h('h' + Math.min(6, m[1].length + 2), {}, inline(m[2])));
      i++;
    } else if (/^\s*(-{3,}|\*{3,}|_{3,})\s*$/.test(line)) {
      out.append(h('hr'));
      i++;
    } else if (/^\s*\|/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/.test(lines[i + 1])) {
      const head = cells(line);
      const rows = [];
      for (i += 2; i < lines.length && /^\s*\|/.test(lines[i]); i++) rows.push(cells(lines[i]));
      out.append(h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, head.map((c) => h('th', { scope: 'col' }, inline(c))))),
        h('tbody', {}, rows.map((r) => h('tr', {}, head.map((_, k) => h('td', {}, inline(r[k] || '')))))))));
    } else if ((m = /^\s*([-*+]|\d+[.)])\s+/.exec(line))) {
      const ordered = /\d/.test(m[1]);
      const list = h(ordered ? 'ol' : 'ul');
      const re = ordered ? /^\s*\d+[.)]\s+(.*)$/ : /^\s*[-*+]\s+(.*)$/;
      let item;
      for (; i < lines.length && (item = re.exec(lines[i])); i++) list.append(h('li', {}, inline(item[1])));
      out.append(list);
    } else if (/^\s*>/.test(line)) {
      const quoted = [];
      for (; i < lines.length && /^\s*>/.test(lines[i]); i++) quoted.push(lines[i].replace(/^\s*>\s?/, ''));
      out.append(h('blockquote', {}, markdown(quoted.join('\n'))));
    } else {
      const para = [];
      for (; i < lines.length && lines[i].trim() && (para.length === 0 || !isBlockStart(lines[i])); i++) para.push(lines[i].trim());
      out.append(h('p', {}, inline(para.join(' '))));
    }
  }
  return out;
}

/// Inline markdown: `code`, **strong**, *em* or _em_, [text](http… link).
function inline(text) {
  const out = [];
  const re = /`([^`]+)`|\*\*(.+?)\*\*|__(.+?)__|\*([^*\s][^*]*?)\*|_([^_\s][^_]*?)_|\[([^\]]+)\]\(([^)\s]+)\)/g;
  let at = 0;
  let m;
  while ((m = re.exec(text))) {
    if (m.index > at) out.push(text.slice(at, m.index));
    if (m[1] !== undefined) out.push(h('code', {}, m[1]));
    else if (m[2] !== undefined || m[3] !== undefined) out.push(h('strong', {}, inline(m[2] ?? m[3])));
    else if (m[4] !== undefined || m[5] !== undefined) out.push(h('em', {}, inline(m[4] ?? m[5])));
    // Only web links: a `javascript:` URL from a run must not become clickable.
    else out.push(/^https?:\/\//i.test(m[7]) ? h('a', { href: m[7], rel: 'noopener noreferrer' }, inline(m[6])) : m[0]);
    at = re.lastIndex;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

function artifactView(a) {
  const title = h('h3', {}, a.key || a.kind, a.description ? ' — ' + a.description : '');
  if (a.kind === 'table' && Array.isArray(a.data) && a.data.length) {
    if (Array.isArray(a.data[0])) {
      return h('div', {}, title, table(a.data[0].map(String), a.data.slice(1).map((row) => row.map((c) => String(c ?? '')))));
    }
    const cols = Object.keys(a.data[0]);
    return h('div', {}, title, table(cols, a.data.map((row) => cols.map((c) => String(row[c] ?? '')))));
  }
  if (a.kind === 'markdown') return h('div', { class: 'md' }, title, markdown(typeof a.data === 'string' ? a.data : String(a.data ?? '')));
  if (a.kind === 'link') {
    const url = String(a.data.url || '');
    // Only web links: a `javascript:` URL from a run must not become clickable.
    return h('div', {}, title, /^https?:\/\//i.test(url) ? h('a', { href: url, rel: 'noopener noreferrer' }, a.data.text || url) : url);
  }
  return h('div', {}, title, h('pre', {}, typeof a.data === 'string' ? a.data : JSON.stringify(a.data, null, 2)));
}

async function flows(main) {
  const [list, deps] = await Promise.all([api('/flows'), api('/deployments')]);
  main.replaceChildren(h('h1', {}, 'Flows'), table(['Flow', 'Version', 'Description', 'Deployments', 'Runs'],
    list.map((f) => [f.name, f.version || '', f.description || '',
      deps.filter((d) => d.flow_name === f.name).map((d) => h('div', {}, link('/deployments/' + encodeURIComponent(d.name), d.name))),
      link('/runs?flow=' + encodeURIComponent(f.name), 'runs')])));
}

function scheduleWords(s) {
  const k = s.schedule;
  if (k.cron) return `cron ${k.cron} (${k.timezone || 'UTC'})`;
  if (k.interval) return `every ${k.interval}s (${k.timezone || 'UTC'})`;
  if (k.rrule) return `rrule ${k.rrule}`;
  return JSON.stringify(k);
}

/// Starts a deployment's run with its default parameters and opens it.
function quickRun(name, status) {
  return h('button', { onclick: async () => {
    try { go('/runs/' + (await api(`/deployments/${encodeURIComponent(name)}/runs`, { body: { parameters: {} } })).id); }
    catch (err) { status.textContent = `${name}: ${err.message}`; }
  } }, 'Quick run');
}

async function deployments(main) {
  const list = await api('/deployments');
  const status = h('p', { class: 'err', role: 'status' });
  main.replaceChildren(h('h1', {}, 'Deployments'), status, table(['Deployment', 'Flow', 'Schedules', 'Work pool', 'Status', ''],
    list.map((d) => [link('/deployments/' + encodeURIComponent(d.name), d.name), d.flow_name,
      d.schedules.map((s) => h('div', {}, scheduleWords(s), s.active ? '' : ' (paused)')), d.work_pool || 'default',
      d.paused ? 'paused' : 'active', quickRun(d.name, status)])));
}

/// A form with one input per parameter of the flow's JSON Schema; checked
/// field by field before it is sent, and the server's answer shown too.
async function deployment(main, name) {
  const d = await api('/deployments/name/' + encodeURIComponent(name));
  const schedules = await api(`/deployments/name/${encodeURIComponent(name)}/schedules`);
  let schema = { properties: {} };
  try { schema = (await api('/flows/name/' + encodeURIComponent(d.flow_name))).parameter_schema || schema; } catch (e) { /* not run yet */ }
  // The deployment's parameters over the flow's defaults, each field typed
  // and checked before anything is sent; the server checks again.
  const fields = schemaFields(schema, schema, d.parameters, '', false);
  const status = h('p', { role: 'status' });
  // novalidate: the checks say what is wrong beside each field.
  const form = h('form', { class: 'run-form', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const errors = [];
    const parameters = fields.read(errors);
    if (errors.length) { status.textContent = 'Fix the fields marked above: ' + errors.join('; '); status.className = 'err'; return; }
    try {
      const run = await api(`/deployments/${encodeURIComponent(name)}/runs`, { body: { parameters } });
      go('/runs/' + run.id);
    } catch (err) { status.textContent = err.message; status.className = 'err'; }
  } }, fields.el, h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Run')));
  const toggle = async () => {
    d.paused = !d.paused;
    await api('/deployments', { method: 'PUT', body: d });
    go(location.pathname);
  };
  main.replaceChildren(
    h('h1', {}, d.name),
    h('dl', { class: 'kv' }, h('dt', {}, 'Flow'), h('dd', {}, d.flow_name), h('dt', {}, 'Work pool'), h('dd', {}, d.work_pool || 'default'),
      h('dt', {}, 'Schedules'), h('dd', {}, schedules.length ? schedules.map((s) => h('div', { class: 'schedule' }, s.description,
        s.active ? '' : ' (paused)', s.next_runs.length ? h('div', { class: 'muted' }, 'next: ' + s.next_runs.map(when).join(', ')) : '')) : 'none'),
      h('dt', {}, 'Status'), h('dd', {}, d.paused ? 'paused' : 'active')),
    h('div', { class: 'actions' }, quickRun(d.name, status), h('button', { onclick: toggle }, d.paused ? 'Resume schedules' : 'Pause schedules'),
      link('/runs?deployment=' + d.id, 'Runs')),
    h('h2', {}, 'Custom run'), form, status,
    h('h2', {}, 'Default parameters'), json(d.parameters));
  if (d.partitions) main.append(...await partitionsView(d.name));
}

/// A partitioned deployment's heatmap (time partitions by static value,
/// each cell its latest run's state, a link to that run) and its backfills.
async function partitionsView(name) {
  const enc = encodeURIComponent(name);
  const [grid, backfills] = await Promise.all([api(`/deployments/name/${enc}/partitions`), api('/backfills?deployment=' + enc)]);
  const cells = new Map(grid.cells.map((c) => [(c.time || '') + '|' + c.column, c]));
  const times = grid.times.length ? grid.times : [''];
  const cell = (c) => {
    const rows = c.rows == null ? '' : `, ${c.rows} rows`;
    const why = c.source_changed ? ', stale (its source changed on the web)' : c.stale ? ', stale (due ' + when(c.due) + ')' : '';
    const label = `${c.partition}: ${c.state_name || 'no run yet'}${rows}${why}`;
    const cls = 'hm ' + (c.state_type ? 's-' + c.state_type : 'hm-missing') + (c.stale ? ' hm-stale' : '');
    return c.run_id ? h('a', { class: cls, href: '/runs/' + c.run_id, title: label, 'aria-label': label, 'data-partition': c.partition }, '')
      : h('span', { class: cls, title: label, 'aria-label': label, 'data-partition': c.partition }, '');
  };
  const heat = h('table', { class: 'heatmap' },
    h('thead', {}, h('tr', {}, h('th', {}, grid.times.length ? 'Partition' : ''), ...grid.columns.map((c) => h('th', {}, c || 'state')))),
    h('tbody', {}, ...times.map((t) => h('tr', {}, h('th', {}, t),
      ...grid.columns.map((col) => h('td', {}, cells.has(t + '|' + col) ? cell(cells.get(t + '|' + col)) : ''))))));
  const counts = Object.entries(grid.counts).map(([k, v]) => `${v} ${k.replace('_', ' ')}`).join(', ');
  // The newest ten: each report reads the deployment's partition runs.
  const reports = await Promise.all(backfills.slice(0, 10).map((b) => api('/backfills/' + encodeURIComponent(b.id) + '/report')));
  const progress = (r) => {
    const n = (k) => r.counts[k] || 0;
    return h('span', {}, h('progress', { max: r.partitions.length || 1, value: n('completed') }),
      ` ${n('completed')}/${r.partitions.length} completed, ${n('in_flight')} in flight, ${n('failed')} failed`);
  };
  return [h('h2', {}, 'Partitions'), h('p', { class: 'muted' }, `${grid.cells.length} partitions: ${counts || 'none yet'}`),
    h('div', { class: 'table-wrap' }, heat),
    h('h2', {}, backfills.length > 10 ? `Backfills (the newest 10 of ${backfills.length})` : 'Backfills'), reports.length ? table(['Backfill', 'Progress', 'Max at once', 'Created'],
      reports.map((r) => [r.backfill.name + (r.backfill.cancelled ? ' (cancelled)' : ''), progress(r), r.backfill.max_concurrent || '—', when(r.backfill.created)]))
      : h('p', { class: 'muted' }, `None yet: headwater backfill ${name} --from … --to …`)];
}

async function workPools(main) {
  const [pools, workers] = await Promise.all([api('/work_pools'), api('/workers')]);
  const queues = await Promise.all(pools.map((p) => api(`/work_pools/${encodeURIComponent(p.name)}/queues`)));
  const now = Date.now();
  const online = (p) => workers.filter((w) => w.work_pool === p.name && now - new Date(w.last_heartbeat) < 30e3).length;
  main.replaceChildren(h('h1', {}, 'Work pools'),
    table(['Pool', 'Type', 'Status', 'Limit', 'Queues'], pools.map((p, i) => [p.name, p.kind,
      p.paused ? 'paused' : (online(p) ? `ready (${online(p)} online)` : 'not ready: no worker online'),
      p.concurrency_limit ?? '—', queues[i].map((q) => `${q.name} (priority ${q.priority}${q.paused ? ', paused' : ''})`).join(', ')])),
    h('h2', {}, 'Workers'),
    table(['Worker', 'Pool', 'Status', 'Last heartbeat'], workers.map((w) => [w.name, w.work_pool,
      now - new Date(w.last_heartbeat) < 30e3 ? 'online' : 'offline', when(w.last_heartbeat)])));
}

/// A JSON Schema node with `$ref`s followed and `Option<…>`'s
/// `anyOf [T, null]` unwrapped (keeping the outer description and default).
function resolveSchema(root, node) {
  let s = node || {};
  for (let k = 0; k < 16; k++) {
    if (s.$ref) {
      const target = s.$ref.replace(/^#\//, '').split('/').reduce((o, p) => (o ? o[p] : undefined), root) || {};
      s = Object.assign({}, target, s.description ? { description: s.description } : {}, 'default' in s ? { default: s.default } : {});
      delete s.$ref;
      continue;
    }
    const alts = s.anyOf || s.oneOf;
    if (alts) {
      const real = alts.filter((x) => x.type !== 'null');
      if (real.length === 1) {
        const rest = Object.assign({}, s);
        delete rest.anyOf; delete rest.oneOf;
        s = Object.assign({}, real[0], rest);
        continue;
      }
    }
    return s;
  }
  return s;
}

/// A schema's `pattern` against a value; a pattern this browser cannot
/// compile is left to the server to check.
function matches(pattern, value) {
  try { return new RegExp(pattern, 'u').test(value); } catch (e) { return true; }
}

const schemaType = (s) => (Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type);
const isSecretField = (s) => s.writeOnly === true || s.format === 'password';

/// Inputs for an object schema, nested objects as fieldsets. Returns the
/// element and `read()`, which gives the object typed in (or field errors).
/// Secrets are password inputs left empty: a stored secret is never sent
/// to the page, and an empty one is saved as `********`, which keeps it.
function schemaFields(root, schema, values, prefix, existing) {
  const obj = resolveSchema(root, schema);
  const required = obj.required || [];
  const parts = [];
  const readers = [];
  for (const [key, raw] of Object.entries(obj.properties || {})) {
    const s = resolveSchema(root, raw);
    const type = schemaType(s);
    const path = prefix ? prefix + '.' + key : key;
    const value = values ? values[key] : undefined;
    const label = `${s.title || key}${required.includes(key) ? ' *' : ''}`;
    if (type === 'object' && s.properties) {
      const inner = schemaFields(root, s, value, path, existing && value !== undefined && value !== null);
      parts.push(h('fieldset', {}, h('legend', {}, label), s.description ? h('p', { class: 'muted' }, s.description) : '', inner.el));
      readers.push((out, errors) => {
        const v = inner.read(errors);
        if (Object.keys(v).length || required.includes(key)) out[key] = v;
      });
      continue;
    }
    const id = 'f-' + path.replace(/[^\w-]/g, '_');
    const error = h('span', { class: 'field-error', id: id + '-err', role: 'alert' });
    let input;
    const shown = value ?? s.default;
    if (isSecretField(s)) {
      const stored = existing && value !== undefined && value !== null;
      input = h('input', { type: 'password', id, autocomplete: 'new-password', placeholder: stored ? '******** (unchanged)' : '' });
      input.dataset.stored = stored ? '1' : '';
    } else if (Array.isArray(s.enum)) {
      input = h('select', { id }, required.includes(key) ? '' : h('option', { value: '' }, '—'),
        s.enum.map((v) => h('option', { value: String(v), selected: String(shown) === String(v) }, String(v))));
    } else if (type === 'boolean') {
      input = h('input', { type: 'checkbox', id, checked: !!shown });
    } else if (type === 'integer' || type === 'number') {
      input = h('input', { type: 'number', id, step: type === 'integer' ? '1' : 'any', value: shown ?? '' });
    } else if (type === 'string') {
      input = h('input', { type: 'text', id, value: shown ?? '' });
    } else {
      input = h('textarea', { id, rows: 3 }, shown === undefined ? '' : JSON.stringify(shown, null, 2));
    }
    input.setAttribute('aria-describedby', id + '-err');
    parts.push(h('label', { for: id }, `${label} (${isSecretField(s) ? 'secret' : type || 'JSON'})`, input,
      s.description ? h('span', { class: 'muted' }, s.description) : '', error));
    readers.push((out, errors) => {
      error.textContent = '';
      const fail = (why) => { error.textContent = why; errors.push(`${path}: ${why}`); };
      if (type === 'boolean' && !isSecretField(s)) { out[key] = input.checked; return; }
      const v = input.value;
      if (v === '') {
        if (isSecretField(s) && input.dataset.stored) out[key] = '********';
        else if (required.includes(key)) fail('required');
        return;
      }
      if (Array.isArray(s.enum)) {
        // The option's own value back, typed (a select only holds strings).
        out[key] = s.enum.find((x) => String(x) === v);
      } else if (isSecretField(s) || type === 'string') {
        if (s.minLength !== undefined && v.length < s.minLength) fail(`at least ${s.minLength} characters`);
        else if (s.maxLength !== undefined && v.length > s.maxLength) fail(`at most ${s.maxLength} characters`);
        else if (s.pattern && !matches(s.pattern, v)) fail(`does not match ${s.pattern}`);
        else out[key] = v;
      } else if (type === 'integer' || type === 'number') {
        const n = Number(v);
        if (type === 'integer' && !/^-?\d+$/.test(v.trim())) fail('expected a whole number');
        else if (Number.isNaN(n)) fail('expected a number');
        else if (s.minimum !== undefined && n < s.minimum) fail(`must be at least ${s.minimum}`);
        else if (s.maximum !== undefined && n > s.maximum) fail(`must be at most ${s.maximum}`);
        else if (s.exclusiveMinimum !== undefined && n <= s.exclusiveMinimum) fail(`must be more than ${s.exclusiveMinimum}`);
        else if (s.exclusiveMaximum !== undefined && n >= s.exclusiveMaximum) fail(`must be less than ${s.exclusiveMaximum}`);
        else out[key] = n;
      } else { try { out[key] = JSON.parse(v); } catch (e) { fail('not valid JSON: ' + e.message); } }
    });
  }
  return {
    el: h('div', { class: 'fields' }, parts),
    read(errors) { const out = {}; for (const r of readers) r(out, errors); return out; },
  };
}

/// Create (no `doc`) or edit a block of `type`, from the type's schema.
function blockForm(type, doc, status) {
  const nameInput = h('input', { type: 'text', id: 'block-name', required: true, value: doc ? doc.name : '', readonly: !!doc, pattern: '[a-z0-9][a-z0-9-_]*' });
  const fields = schemaFields(type.schema, type.schema, doc ? doc.data : undefined, '', !!doc);
  return h('form', { class: 'block-form', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const errors = [];
    const name = nameInput.value.trim();
    if (!name) errors.push('name: required');
    const data = fields.read(errors);
    if (errors.length) { status.className = 'err'; status.textContent = 'Fix the fields marked above: ' + errors.join('; '); return; }
    try {
      const saved = await api('/blocks', { method: 'PUT', body: { name, block_type: type.slug, data, created: doc ? doc.created : new Date().toISOString(), updated: new Date().toISOString() } });
      go('/blocks/' + encodeURIComponent(saved.name) + '?saved=1');
    } catch (err) { status.className = 'err'; status.textContent = err.message; }
  } },
  h('label', { for: 'block-name' }, 'Block name *', nameInput), fields.el,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, doc ? 'Save' : 'Create')));
}

async function blocks(main, params) {
  const [list, types] = await Promise.all([api('/blocks'), api('/block_types')]);
  const status = h('p', { role: 'status' });
  const formBox = h('div');
  const showForm = () => {
    const t = types.find((x) => x.slug === typeSelect.value);
    formBox.replaceChildren(t ? blockForm(t, null, status) : '');
  };
  const typeSelect = h('select', { id: 'block-type', onchange: showForm }, h('option', { value: '' }, 'choose a type…'), types.map((t) => h('option', { value: t.slug, selected: params.get('type') === t.slug }, `${t.name} (${t.slug})`)));
  main.replaceChildren(h('h1', {}, 'Blocks'),
    table(['Block', 'Type', 'Fields (secrets masked)', 'Updated'], list.map((b) => [link('/blocks/' + encodeURIComponent(b.name), b.name), b.block_type, json(b.data), when(b.updated)])),
    h('h2', {}, 'New block'), h('label', { for: 'block-type' }, 'Type', typeSelect), formBox, status,
    h('h2', {}, 'Block types'), table(['Type', 'Name', 'Description'], types.map((t) => [t.slug, t.name, t.description])));
  if (typeSelect.value) showForm();
}

async function block(main, name) {
  const doc = await api('/blocks/' + encodeURIComponent(name));
  const types = await api('/block_types');
  const type = types.find((t) => t.slug === doc.block_type);
  const status = h('p', { role: 'status' }, new URLSearchParams(location.search).get('saved') ? 'Saved.' : '');
  const remove = h('button', { onclick: async () => {
    if (!confirm(`Delete block '${doc.name}'?`)) return;
    try { await api('/blocks/' + encodeURIComponent(doc.name), { method: 'DELETE' }); go('/blocks'); }
    catch (err) { status.className = 'err'; status.textContent = err.message; }
  } }, 'Delete');
  main.replaceChildren(h('h1', {}, doc.name),
    h('dl', { class: 'kv' }, h('dt', {}, 'Type'), h('dd', {}, type ? `${type.name} (${type.slug})` : doc.block_type),
      h('dt', {}, 'Created'), h('dd', {}, when(doc.created)), h('dt', {}, 'Updated'), h('dd', {}, when(doc.updated))),
    h('h2', {}, 'Fields (secrets masked)'), json(doc.data),
    h('h2', {}, 'Edit'), type ? blockForm(type, doc, status) : h('p', { class: 'muted' }, 'Unknown block type: it cannot be edited here.'),
    status, h('div', { class: 'actions' }, remove));
}

async function automations(main) {
  const list = await api('/automations');
  main.replaceChildren(h('h1', {}, 'Automations'), table(['Automation', 'Trigger', 'Actions', 'Enabled', 'Delivered', 'Pending', 'Failed', 'Last error'],
    list.map((a) => [a.name, a.trigger.type, a.actions.map((x) => x.type + (x.block ? ' ' + x.block : '')).join(', '), a.enabled ? 'yes' : 'paused',
      a.status.delivered, a.status.pending, a.status.failed, a.status.last_error || '—'])));
}

async function variables(main) {
  const list = await api('/variables');
  main.replaceChildren(h('h1', {}, 'Variables'), table(['Name', 'Value', 'Tags'], list.map((v) => [v.name, JSON.stringify(v.value), v.tags.join(', ')])));
}

async function artifacts(main) {
  const list = await api('/artifacts/filter', { body: { latest_only: true } });
  main.replaceChildren(h('h1', {}, 'Artifacts'), list.length ? h('div', {}, list.map(artifactView)) : h('p', { class: 'muted' }, 'No artifacts yet.'));
}

async function datasets(main) {
  const list = await api('/datasets');
  main.replaceChildren(h('h1', {}, 'Datasets'), table(['Dataset', 'Partitions', 'Rows', 'Bytes', 'Updated', 'Schema'],
    list.map((d) => [link('/datasets/' + encodeURIComponent(d.name), d.name), d.partitions, d.rows, d.bytes, when(d.updated),
      d.schema.map((c) => `${c.name} ${c.data_type}`).join(', ')])));
}

/// A dataset's partitions: the current version of each, and, under a
/// freshness policy, the ones not written yet, late ones marked.
function partitionTable(parts, writer) {
  const why = (p) => (p.source_changed ? 'stale: its source changed on the web' : p.stale ? 'stale: late' : '');
  const rows = parts.map((p) => {
    const v = p.version || {};
    return [p.partition, v.version ?? '—', v.rows ?? '—', v.bytes ?? '—', v.location || '—',
      v.written ? when(v.written) : 'not written', p.version ? writer(v) : '—', when(p.due), why(p)];
  });
  return table(['Partition', 'Version', 'Rows', 'Bytes', 'Location', 'Written', 'By', 'Due', 'Fresh?'], rows,
    parts.map((p) => (p.stale ? 'stale' : '')));
}

/// A dataset's schema, its partitions (current versions) and every write,
/// each with the run that wrote it.
async function dataset(main, name) {
  const path = '/datasets/' + encodeURIComponent(name);
  const [d, parts, history, lineage] = await Promise.all([api(path), api(path + '/freshness'), api(path + '/history'),
    api(path + '/lineage')]);
  const writer = (v) => (v.flow_run_id ? link('/runs/' + v.flow_run_id, 'run') : '—');
  const datasets = (names) => (names.length ? names.flatMap((n, i) => [i ? ', ' : '', link('/datasets/' + encodeURIComponent(n), n)]) : '—');
  const from = (v) => v.inputs.map((i) => `${i.dataset} ${i.partition} v${i.version}`).join(', ') || '—';
  main.replaceChildren(h('h1', {}, d.name),
    h('dl', { class: 'kv' }, h('dt', {}, 'Partitions'), h('dd', {}, d.partitions), h('dt', {}, 'Rows'), h('dd', {}, d.rows),
      h('dt', {}, 'Bytes'), h('dd', {}, d.bytes), h('dt', {}, 'Updated'), h('dd', {}, when(d.updated)),
      h('dt', {}, 'Made from'), h('dd', { class: 'upstream' }, datasets(lineage.upstream)),
      h('dt', {}, 'Made into'), h('dd', { class: 'downstream' }, datasets(lineage.downstream))),
    h('h2', {}, 'Schema'), table(['Column', 'Type'], d.schema.map((c) => [c.name, c.data_type])),
    d.policy ? h('p', { class: 'policy' },
      `Each ${d.policy.time.every} is due ${duration(new Date(0), new Date(d.policy.freshness.within * 1000))} after it ends.`) : '',
    h('h2', {}, 'Partitions'), partitionTable(parts, writer),
    h('h2', {}, 'Versions'), table(['Partition', 'Version', 'Rows', 'Written', 'By', 'From'],
      history.map((v) => [v.partition, v.version, v.rows, when(v.written), writer(v), from(v)])));
}

/// Who did what: the keys, and the calls that changed something (admin keys only).
async function audit(main, params) {
  const key = params.get('key') || '';
  const before = params.get('before') || '';
  const query = new URLSearchParams({ limit: '100' });
  if (key) query.set('key', key);
  if (before) query.set('before', before);
  const [keys, entries] = await Promise.all([api('/api_keys'), api('/audit?' + query)]);
  const select = h('select', { name: 'key', onchange: () => go('/audit' + (select.value ? '?key=' + encodeURIComponent(select.value) : '')) },
    h('option', { value: '' }, 'every key'), ...keys.map((k) => h('option', { value: k.name, selected: k.name === key }, k.name)));
  const older = entries.length === 100
    ? link('/audit?' + new URLSearchParams({ ...(key ? { key } : {}), before: String(entries[entries.length - 1].id) }), 'Older entries') : '';
  main.replaceChildren(h('h1', {}, 'Audit log'),
    h('h2', {}, 'API keys'),
    keys.length ? table(['Key', 'Role', 'Starts with', 'Created', 'Revoked'],
      keys.map((k) => [k.name, k.role, k.prefix + '…', when(k.created), k.revoked ? when(k.revoked) : '—']))
      : h('p', { class: 'muted' }, 'No named keys (make one with headwater api-key create).'),
    h('h2', {}, 'Calls that changed something'),
    h('label', {}, 'Made with ', select),
    entries.length ? table(['Time', 'Key', 'Call', 'Status'],
      entries.map((e) => [when(e.at), e.key || '—', `${e.method} ${e.path}`, String(e.status)]))
      : h('p', { class: 'muted' }, 'Nothing recorded yet.'),
    older);
}

function askForKey(main, message) {
  const input = h('input', { type: 'password', name: 'key', autocomplete: 'current-password', required: true });
  main.replaceChildren(h('h1', {}, 'API key'), h('p', {}, message),
    h('form', { onsubmit: (e) => { e.preventDefault(); sessionStorage.setItem('headwater-api-key', input.value); route(); } },
      h('label', {}, 'This server requires an API key', input), h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Continue'))));
}

// ---- routing ---------------------------------------------------------------

const ROUTES = [
  [/^\/$/, dashboard], [/^\/runs$/, flowRuns], [/^\/runs\/([^/]+)$/, flowRun], [/^\/flows$/, flows],
  [/^\/deployments$/, deployments], [/^\/deployments\/([^/]+)$/, deployment], [/^\/work-pools$/, workPools],
  [/^\/blocks$/, blocks], [/^\/blocks\/([^/]+)$/, block], [/^\/automations$/, automations], [/^\/variables$/, variables],
  [/^\/artifacts$/, artifacts], [/^\/datasets$/, datasets], [/^\/datasets\/([^/]+)$/, dataset],
  [/^\/audit$/, audit],
];

async function route() {
  if (live) { live.abort(); live = null; }
  const main = document.getElementById('main');
  const path = location.pathname;
  for (const a of document.querySelectorAll('nav a')) {
    const here = a.getAttribute('href') === '/' ? path === '/' : path.startsWith(a.getAttribute('href'));
    if (here) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const found = ROUTES.find(([re]) => re.test(path));
  if (!found) { main.replaceChildren(h('h1', {}, 'Not found'), link('/', 'Dashboard')); return; }
  const arg = found[0].exec(path)[1];
  try {
    await found[1](main, arg !== undefined ? decodeURIComponent(arg) : new URLSearchParams(location.search));
    document.title = (main.querySelector('h1') || {}).textContent + ' · Headwater';
  } catch (e) {
    if (e.status === 401 || e.status === 403) askForKey(main, e.message);
    else main.replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'err' }, e.message));
  }
}

function go(href) { history.pushState(null, '', href); route(); }

document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href^="/"]');
  if (!a || e.ctrlKey || e.metaKey || e.shiftKey || a.target) return;
  e.preventDefault();
  go(a.getAttribute('href'));
});
window.addEventListener('popstate', route);
document.addEventListener('DOMContentLoaded', route);
