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
  for (const c of children.flat()) {
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

function table(headers, rows) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
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

/// Follows a run's server-sent events (read with fetch, which, unlike
/// EventSource, can send the API key); calls `onUpdate` for each change.
async function follow(id, onUpdate, signal) {
  const headers = {};
  const key = sessionStorage.getItem('headwater-api-key');
  if (key) headers.authorization = 'Bearer ' + key;
  const resp = await fetch(`/api/flow_runs/${id}/events`, { headers, signal });
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
      if (/^event: ?update/m.test(block)) onUpdate();
    }
  }
}

const runs = (filter) => api('/flow_runs/filter', { body: Object.assign({ limit: 50 }, filter) });

// ---- pages -----------------------------------------------------------------

async function dashboard(main) {
  const [recent, failed, late, pools, workers] = await Promise.all([
    runs({ limit: 1000 }), runs({ states: ['FAILED', 'CRASHED'], limit: 10 }), runs({ state_names: ['Late'], limit: 10 }),
    api('/work_pools'), api('/workers'),
  ]);
  const day = Date.now() - 86400e3;
  const counts = {};
  for (const r of recent.filter((r) => new Date(r.created) >= day)) counts[r.state.type] = (counts[r.state.type] || 0) + 1;
  const now = Date.now();
  main.replaceChildren(
    h('h1', {}, 'Dashboard'),
    h('h2', {}, 'Runs of the last 24 hours by state'),
    h('div', { class: 'cards' }, STATES.filter((s) => counts[s]).map((s) =>
      h('div', { class: 'card' }, h('span', { class: 'badge s-' + s }, s), h('b', {}, counts[s])))),
    Object.keys(counts).length ? '' : h('p', { class: 'muted' }, 'No runs in the last 24 hours.'),
    h('h2', {}, 'Failed runs'), runTable(failed),
    h('h2', {}, 'Late runs'), runTable(late),
    h('h2', {}, 'Work pools'),
    table(['Pool', 'Type', 'Status', 'Workers online'], pools.map((p) => {
      const mine = workers.filter((w) => w.work_pool === p.name);
      const online = mine.filter((w) => now - new Date(w.last_heartbeat) < 30e3).length;
      return [link('/work-pools', p.name), p.kind, p.paused ? 'paused' : (online ? 'ready' : 'not ready'), `${online} of ${mine.length}`];
    })),
  );
}

function runTable(list) {
  return table(['Run', 'Flow', 'State', 'Started', 'Duration', 'Tags'], list.map((r) => [
    link('/runs/' + r.id, r.name), r.flow_name, badge(r.state), when(r.start_time),
    duration(r.start_time, r.end_time), (r.tags || []).join(', '),
  ]));
}

async function flowRuns(main, params) {
  const [flows, deployments] = await Promise.all([api('/flows'), api('/deployments')]);
  const filter = { limit: 50 };
  const state = params.get('state');
  if (state === 'Late') filter.state_names = ['Late'];
  else if (state) filter.states = [state];
  if (params.get('flow')) filter.flow_name = params.get('flow');
  if (params.get('deployment')) filter.deployment_id = params.get('deployment');
  if (params.get('before_created')) filter.before = { created: params.get('before_created'), id: params.get('before_id') };
  const list = await runs(filter);
  const select = (name, label, options) => h('label', {}, label, h('select', { name },
    h('option', { value: '' }, 'any'),
    options.map(([v, t]) => h('option', { value: v, selected: params.get(name) === v }, t))));
  const form = h('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (v) q.set(k, v);
    go('/runs?' + q);
  } },
  select('state', 'State', STATES.map((s) => [s, s]).concat([['Late', 'Late']])),
  select('flow', 'Flow', flows.map((f) => [f.name, f.name])),
  select('deployment', 'Deployment', deployments.map((d) => [d.id, d.name])),
  h('button', { type: 'submit' }, 'Filter'));
  const pager = h('div', { class: 'pager' });
  if (list.length === 50) {
    const last = list[list.length - 1];
    const q = new URLSearchParams(params);
    q.set('before_created', last.created);
    q.set('before_id', last.id);
    pager.append(link('/runs?' + q, 'Older runs →'));
  }
  main.replaceChildren(h('h1', {}, 'Flow runs'), form, runTable(list), pager);
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
    const [r, tasks, states, newLogs, children, artifacts] = await Promise.all([
      api('/flow_runs/' + id), api(`/flow_runs/${id}/task_runs`), api('/states/' + id),
      api('/logs/filter', { body: { flow_run_id: id, after_id: afterId, limit: 5000 } }),
      runs({ parent_flow_run_id: id, limit: 1000 }), api('/artifacts/filter', { body: { flow_run_id: id } }),
    ]);
    if (newLogs.length) { logs = logs.concat(newLogs); afterId = newLogs[newLogs.length - 1].id; showLogs(); }
    header.replaceChildren(
      h('h1', {}, r.name, ' ', badge(r.state)),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Flow'), h('dd', {}, r.flow_name),
        h('dt', {}, 'State'), h('dd', {}, r.state.name, r.state.message ? ': ' + r.state.message : ''),
        h('dt', {}, 'Started'), h('dd', {}, when(r.start_time)),
        h('dt', {}, 'Duration'), h('dd', {}, duration(r.start_time, r.end_time)),
        h('dt', {}, 'Attempts'), h('dd', {}, r.run_count),
        r.parent_flow_run_id ? [h('dt', {}, 'Parent'), h('dd', {}, link('/runs/' + r.parent_flow_run_id, 'parent run'))] : '',
        r.work_pool ? [h('dt', {}, 'Work pool'), h('dd', {}, r.work_pool)] : ''),
      h('div', { class: 'actions' },
        FINAL.includes(r.state.type) ? '' : h('button', { onclick: act('cancel') }, 'Cancel'),
        FINAL.includes(r.state.type) && r.work_pool ? h('button', { onclick: act('retry') }, 'Retry') : ''),
      h('h2', {}, 'Parameters'), json(r.parameters));
    timeline.replaceChildren(gantt(r, tasks, children));
    history.replaceChildren(h('h2', {}, 'State history'),
      table(['State', 'At', 'Message'], states.map((s) => [badge(s.state), when(s.state.timestamp), s.state.message || ''])));
    related.replaceChildren(
      children.length ? [h('h2', {}, 'Subflow runs'), runTable(children)] : '',
      artifacts.length ? [h('h2', {}, 'Artifacts'), artifacts.map(artifactView)] : '');
  }
  await refresh();
  if (FINAL.includes(run.state.type)) return;
  // Live: each change the server announces is fetched (one refresh at a
  // time; changes meanwhile are caught by the next one).
  const controller = new AbortController();
  live = controller;
  let busy = null;
  let again = false;
  const onUpdate = async () => {
    if (busy) { again = true; return; }
    do {
      again = false;
      busy = refresh().catch(() => {});
      await busy;
    } while (again);
    busy = null;
  };
  (async () => {
    while (!controller.signal.aborted) {
      try { await follow(id, onUpdate, controller.signal); return; } // ended: the run finished
      catch (e) { if (controller.signal.aborted) return; await new Promise((r) => setTimeout(r, 2000)); }
    }
  })();
}

/// Task runs and subflows as bars on one time axis, coloured by state.
function gantt(run, tasks, children) {
  const items = tasks.map((t) => ({ name: t.name, state: t.state, start: t.start_time, end: t.end_time, tries: t.run_count }))
    .concat(children.map((c) => ({ name: '↳ ' + c.name, state: c.state, start: c.start_time, end: c.end_time, tries: c.run_count, href: '/runs/' + c.id })))
    .filter((i) => i.start);
  if (!items.length) return h('p', { class: 'muted' }, 'No task has started.');
  const t0 = Math.min(...items.map((i) => +new Date(i.start)));
  const t1 = Math.max(Date.now() * !run.end_time, ...items.map((i) => +new Date(i.end || Date.now())), run.end_time ? +new Date(run.end_time) : 0);
  const span = Math.max(1, t1 - t0);
  const box = h('div', { class: 'gantt', role: 'list', 'aria-label': 'Timeline of task runs' });
  const frag = document.createDocumentFragment();
  for (const i of items) {
    const left = ((+new Date(i.start) - t0) / span) * 100;
    const width = ((+new Date(i.end || Date.now()) - +new Date(i.start)) / span) * 100;
    const label = `${i.name}: ${i.state.name}, ${duration(i.start, i.end)}${i.tries > 1 ? `, ${i.tries} attempts` : ''}`;
    const bar = h('div', { class: 'g-bar ' + (i.state.name === 'Late' ? 's-Late' : 's-' + i.state.type), title: label });
    // Through the CSSOM: the page's CSP allows no style attributes.
    bar.style.left = left.toFixed(3) + '%';
    bar.style.width = Math.max(width, 0.2).toFixed(3) + '%';
    frag.append(h('div', { class: 'g-row', role: 'listitem', 'aria-label': label },
      h('span', { class: 'g-name' }, i.href ? link(i.href, i.name) : i.name, i.tries > 1 ? ` ×${i.tries}` : ''),
      h('div', { class: 'g-track' }, bar)));
  }
  box.append(frag);
  return box;
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
  if (a.kind === 'link') {
    const url = String(a.data.url || '');
    // Only web links: a `javascript:` URL from a run must not become clickable.
    return h('div', {}, title, /^https?:\/\//i.test(url) ? h('a', { href: url, rel: 'noopener noreferrer' }, a.data.text || url) : url);
  }
  return h('div', {}, title, h('pre', {}, typeof a.data === 'string' ? a.data : JSON.stringify(a.data, null, 2)));
}

async function flows(main) {
  const list = await api('/flows');
  main.replaceChildren(h('h1', {}, 'Flows'), table(['Flow', 'Version', 'Description', 'Runs'],
    list.map((f) => [f.name, f.version || '', f.description || '', link('/runs?flow=' + encodeURIComponent(f.name), 'runs')])));
}

function scheduleWords(s) {
  const k = s.schedule;
  if (k.cron) return `cron ${k.cron} (${k.timezone || 'UTC'})`;
  if (k.interval) return `every ${k.interval}s (${k.timezone || 'UTC'})`;
  if (k.rrule) return `rrule ${k.rrule}`;
  return JSON.stringify(k);
}

async function deployments(main) {
  const list = await api('/deployments');
  main.replaceChildren(h('h1', {}, 'Deployments'), table(['Deployment', 'Flow', 'Schedules', 'Work pool', 'Status'],
    list.map((d) => [link('/deployments/' + encodeURIComponent(d.name), d.name), d.flow_name,
      d.schedules.map((s) => h('div', {}, scheduleWords(s), s.active ? '' : ' (paused)')), d.work_pool || 'default',
      d.paused ? 'paused' : 'active'])));
}

/// A form with one input per parameter of the flow's JSON Schema; checked
/// field by field before it is sent, and the server's answer shown too.
async function deployment(main, name) {
  const d = await api('/deployments/name/' + encodeURIComponent(name));
  const schedules = await api(`/deployments/name/${encodeURIComponent(name)}/schedules`);
  let schema = { properties: {} };
  try { schema = (await api('/flows/name/' + encodeURIComponent(d.flow_name))).parameter_schema || schema; } catch (e) { /* not run yet */ }
  const props = schema.properties || {};
  const required = schema.required || [];
  const fields = Object.entries(props).map(([key, p]) => {
    const type = Array.isArray(p.type) ? p.type.find((t) => t !== 'null') : p.type;
    const value = d.parameters[key] !== undefined ? d.parameters[key] : p.default;
    let input;
    if (type === 'boolean') input = h('input', { type: 'checkbox', name: key, checked: !!value });
    else if (type === 'integer' || type === 'number') input = h('input', { type: 'number', name: key, step: type === 'integer' ? '1' : 'any', value: value ?? '' });
    else if (type === 'string') input = h('input', { type: 'text', name: key, value: value ?? '' });
    else input = h('textarea', { name: key, rows: 2 }, value === undefined ? '' : JSON.stringify(value));
    const error = h('span', { class: 'field-error', id: 'err-' + key, role: 'alert' });
    input.setAttribute('aria-describedby', 'err-' + key);
    return { key, type, input, error, el: h('label', {}, `${key}${required.includes(key) ? ' *' : ''} (${type || 'JSON'})`, input, error) };
  });
  const status = h('p', { role: 'status' });
  // novalidate: the checks below say what is wrong beside each field.
  const form = h('form', { novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    const parameters = {};
    let ok = true;
    for (const f of fields) {
      f.error.textContent = '';
      const raw = f.input.type === 'checkbox' ? f.input.checked : f.input.value;
      if (raw === '' && f.type !== 'boolean') {
        if (required.includes(f.key) && d.parameters[f.key] === undefined) { f.error.textContent = 'required'; ok = false; }
        continue;
      }
      if (f.type === 'integer' && !/^-?\d+$/.test(raw)) { f.error.textContent = 'expected a whole number'; ok = false; continue; }
      if (f.type === 'number' && Number.isNaN(Number(raw))) { f.error.textContent = 'expected a number'; ok = false; continue; }
      if (f.type === 'integer' || f.type === 'number') parameters[f.key] = Number(raw);
      else if (f.type === 'boolean' || f.type === 'string') parameters[f.key] = raw;
      else {
        try { parameters[f.key] = JSON.parse(raw); } catch (err) { f.error.textContent = 'not valid JSON: ' + err.message; ok = false; }
      }
    }
    if (!ok) { status.textContent = 'Fix the fields marked above.'; status.className = 'err'; return; }
    try {
      const run = await api(`/deployments/${encodeURIComponent(name)}/runs`, { body: { parameters } });
      go('/runs/' + run.id);
    } catch (err) { status.textContent = err.message; status.className = 'err'; }
  } }, fields.map((f) => f.el), h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Run')));
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
    h('div', { class: 'actions' }, h('button', { onclick: toggle }, d.paused ? 'Resume schedules' : 'Pause schedules'),
      link('/runs?deployment=' + d.id, 'Runs')),
    h('h2', {}, 'Custom run'), form, status,
    h('h2', {}, 'Default parameters'), json(d.parameters));
}

async function workPools(main) {
  const [pools, workers] = await Promise.all([api('/work_pools'), api('/workers')]);
  const queues = await Promise.all(pools.map((p) => api(`/work_pools/${encodeURIComponent(p.name)}/queues`)));
  const now = Date.now();
  main.replaceChildren(h('h1', {}, 'Work pools'),
    table(['Pool', 'Type', 'Paused', 'Limit', 'Queues'], pools.map((p, i) => [p.name, p.kind, p.paused ? 'yes' : 'no',
      p.concurrency_limit ?? '—', queues[i].map((q) => `${q.name} (priority ${q.priority}${q.paused ? ', paused' : ''})`).join(', ')])),
    h('h2', {}, 'Workers'),
    table(['Worker', 'Pool', 'Status', 'Last heartbeat'], workers.map((w) => [w.name, w.work_pool,
      now - new Date(w.last_heartbeat) < 30e3 ? 'online' : 'offline', when(w.last_heartbeat)])));
}

async function blocks(main) {
  const [list, types] = await Promise.all([api('/blocks'), api('/block_types')]);
  main.replaceChildren(h('h1', {}, 'Blocks'),
    table(['Block', 'Type', 'Fields (secrets masked)', 'Updated'], list.map((b) => [b.name, b.block_type, json(b.data), when(b.updated)])),
    h('h2', {}, 'Block types'), table(['Type', 'Description'], types.map((t) => [t.slug, t.description])));
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
  main.replaceChildren(h('h1', {}, 'Artifacts'), list.length ? list.map(artifactView) : h('p', { class: 'muted' }, 'No artifacts yet.'));
}

async function datasets(main) {
  const list = await api('/datasets');
  main.replaceChildren(h('h1', {}, 'Datasets'), table(['Dataset', 'Partitions', 'Rows', 'Bytes', 'Updated', 'Schema'],
    list.map((d) => [d.name, d.partitions, d.rows, d.bytes, when(d.updated), d.schema.map((c) => `${c.name} ${c.data_type}`).join(', ')])));
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
  [/^\/blocks$/, blocks], [/^\/automations$/, automations], [/^\/variables$/, variables],
  [/^\/artifacts$/, artifacts], [/^\/datasets$/, datasets],
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
    if (e.status === 401) askForKey(main, e.message);
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
