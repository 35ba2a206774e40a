// The customer usage page: /portal#token=<subject token>[&subject=<subject key>].
// Reads the subject's entitlements over GraphQL with the token, draws the current period, and keeps
// the figures live through the entitlementValues subscription (docs/semantics.md §10).
(function () {
  'use strict';

  const ENTITLEMENTS = `query Portal($s: String!) {
  entitlements(subjectKey: $s) {
    __typename id type featureKey feature { name }
    value { hasAccess balance usage overage config }
    ... on StaticEntitlement { config }
    ... on MeteredEntitlement { isSoftLimit usagePeriod { interval } currentUsagePeriod { from to } }
  }
}`;
  const WINDOWS = 'windowedHistory { period { from to } usage balanceAtStart }';
  const UPDATES = `subscription Live($s: String!) {
  entitlementValues(subjectKey: $s) {
    featureKey entitlementId asOf cause value { hasAccess balance usage overage config }
  }
}`;

  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get('token') || '';
  const claims = readClaims(token);
  const subject = params.get('subject') || (claims && claims.s) || '';
  const endpoint = new URL('graphql', window.location.href).toString();
  const numbers = new Intl.NumberFormat(undefined, {maximumFractionDigits: 2});
  const percents = new Intl.NumberFormat(undefined, {style: 'percent', maximumFractionDigits: 1});
  const dates = new Intl.DateTimeFormat(undefined, {dateStyle: 'medium', timeStyle: 'short'});
  const days = new Intl.DateTimeFormat(undefined, {month: 'short', day: 'numeric'});
  const hours = new Intl.DateTimeFormat(undefined, {hour: '2-digit', minute: '2-digit'});
  let timeZone = 'UTC';
  try { timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'; } catch (e) { /* keep UTC */ }

  let entitlements = [];       // as last loaded
  let histories = {};          // entitlement id -> windows
  const latest = {};           // feature key -> {value, asOf, seq}: live updates
  let seq = 0;
  let loading = null;          // the load in flight
  let again = false;           // another load is wanted after it
  let stopped = false;         // the token is no longer valid: no more loads or updates
  let client = null;

  // ------------------------------------------------------------------ helpers

  function readClaims(t) {
    // A subject token is cgt_<base64url JSON {i, s, e}>.<signature>: the subject and expiry are readable.
    try {
      if (!t.startsWith('cgt_')) return null;
      const body = t.slice(4).split('.')[0].replace(/-/g, '+').replace(/_/g, '/');
      const c = JSON.parse(atob(body + '='.repeat((4 - body.length % 4) % 4)));
      return typeof c.s === 'string' && typeof c.e === 'number' ? c : null;
    } catch (e) {
      return null;
    }
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v; else el.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    for (const c of children) el.append(c instanceof Node ? c : String(c));
    return el;
  }

  const num = (x) => (x === null || x === undefined ? '–' : numbers.format(x));

  class ApiError extends Error {
    constructor(message, code) { super(message); this.code = code; }
  }

  async function gql(query, variables) {
    let resp;
    try {
      resp = await fetch(endpoint, {
        method: 'POST',
        headers: {'content-type': 'application/json', 'accept': 'application/json',
                  'authorization': 'Bearer ' + token},
        body: JSON.stringify({query: query, variables: variables}),
      });
    } catch (e) {
      throw new ApiError('cannot reach the server', 'NETWORK');
    }
    let body;
    try { body = await resp.json(); } catch (e) { throw new ApiError('unexpected answer (' + resp.status + ')', 'HTTP'); }
    if (body.errors && body.errors.length) {
      const err = body.errors[0];
      throw new ApiError(err.message, (err.extensions && err.extensions.code) || 'ERROR');
    }
    return body.data;
  }

  // ------------------------------------------------------------------ notices and live state

  function notice(kind, title, text, action) {
    const box = document.getElementById('notice');
    box.hidden = false;
    box.dataset.kind = kind;
    box.replaceChildren(h('strong', {}, title), h('p', {}, text), action || '');
  }

  function reloadButton(label) {
    const b = h('button', {type: 'button'}, label || 'Reload');
    b.addEventListener('click', () => window.location.reload());
    return b;
  }

  function refuse(code, message) {
    stopped = true;
    if (client) { client.close(); client = null; }
    setLive('off', '');
    document.body.dataset.state = 'refused';
    if (code === 'FORBIDDEN') {
      notice('error', 'This link is for another account',
        'Its access token does not belong to "' + subject + '". Open the usage page again from your account.');
    } else if (/expired/i.test(message)) {
      notice('error', 'This link has expired',
        'Usage links are only valid for a while' + (entitlements.length ? ': the figures below are no longer updated' : '') +
        '. Open the usage page again from your account to get a new one.');
      document.body.dataset.state = 'expired';
    } else if (/invalidated/i.test(message)) {
      notice('error', 'This link has been revoked', 'Open the usage page again from your account to get a new one.');
    } else {
      notice('error', 'This link is not valid',
        'The access token in the address is incomplete or wrong. Open the usage page again from your account.');
    }
  }

  function failure(err) {
    if (err.code === 'UNAUTHENTICATED' || err.code === 'FORBIDDEN') return refuse(err.code, err.message);
    notice('warning', 'Usage could not be loaded', err.message + '. Try again in a moment.', reloadButton('Try again'));
  }

  function setLive(state, text) {
    const el = document.getElementById('live');
    el.dataset.state = state;
    el.replaceChildren(text ? h('span', {class: 'dot', 'aria-hidden': 'true'}) : '', text || '');
    if (state === 'unavailable') el.append(' ', reloadButton('Reload'));
  }

  // ------------------------------------------------------------------ loading

  function periodHours(e) {
    const p = e.currentUsagePeriod;
    return (Date.parse(p.to) - Date.parse(p.from)) / 3600e3;
  }

  async function loadHistories(list) {
    const metered = list.filter((e) => e.__typename === 'MeteredEntitlement');
    if (!metered.length) return {};
    const vars = {tz: timeZone};
    const decl = ['$tz: String'];
    const fields = metered.map((e, i) => {
      vars['id' + i] = e.id;
      decl.push('$id' + i + ': ID!');
      const size = periodHours(e) <= 48 ? 'HOUR' : 'DAY';
      return `h${i}: entitlement(id: $id${i}) { ... on MeteredEntitlement {
        history(windowSize: ${size}, windowTimeZone: $tz) { ${WINDOWS} } } }`;
    });
    let data;
    try {
      data = await gql(`query History(${decl.join(', ')}) { ${fields.join('\n')} }`, vars);
    } catch (err) {
      if (err.code !== 'BAD_USER_INPUT' || timeZone === 'UTC') throw err;
      timeZone = 'UTC'; // a zone the server does not know
      return loadHistories(list);
    }
    const out = {};
    metered.forEach((e, i) => {
      const got = data['h' + i];
      out[e.id] = got && got.history ? got.history.windowedHistory : [];
    });
    return out;
  }

  async function loadOnce() {
    const started = seq;
    const data = await gql(ENTITLEMENTS, {s: subject});
    const list = data.entitlements.slice().sort((a, b) => a.featureKey.localeCompare(b.featureKey));
    const hist = await loadHistories(list);
    if (stopped) return;
    entitlements = list;
    histories = hist;
    // Live updates newer than this load win over it; load again to bring the chart along.
    let newer = false;
    for (const e of entitlements) {
      const u = latest[e.featureKey];
      if (u && u.seq > started) { e.value = u.value; newer = true; }
    }
    render();
    document.getElementById('updated').textContent = 'Updated ' + dates.format(new Date());
    if (newer) again = true;
  }

  function load() {
    if (stopped) return Promise.resolve();
    if (loading) { again = true; return loading; }
    loading = (async () => {
      try {
        do {
          again = false;
          await loadOnce();
        } while (again && !stopped);
        if (!stopped) document.getElementById('notice').hidden = true;
      } catch (err) {
        failure(err);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  // ------------------------------------------------------------------ rendering

  function render() {
    const box = document.getElementById('features');
    document.body.dataset.state = 'ready';
    if (!entitlements.length) {
      box.replaceChildren(h('p', {class: 'empty'}, 'No features yet.'));
      return;
    }
    box.replaceChildren(...entitlements.map(card));
  }

  function card(e) {
    const name = (e.feature && e.feature.name) || e.featureKey;
    const v = e.value;
    const head = h('header', {},
      h('h2', {}, name),
      h('span', {class: 'state ' + (v.hasAccess ? 'on' : 'off')}, v.hasAccess ? 'On' : 'Off'));
    const attrs = {class: 'card ' + e.type.toLowerCase(), 'data-feature': e.featureKey, 'data-type': e.type};
    if (e.__typename !== 'MeteredEntitlement') {
      const config = e.config !== undefined && e.config !== null ? e.config : v.config;
      return h('article', attrs, head,
        config !== null && config !== undefined
          ? h('dl', {class: 'config'}, ...configItems(config)) : '');
    }
    const usage = v.usage || 0;
    const balance = v.balance || 0;
    const overage = v.overage || 0;
    const total = balance + usage - overage;   // what the period granted
    const share = total > 0 ? usage / total : (usage > 0 ? 1 : 0);
    const p = e.currentUsagePeriod;
    const meter = h('div', {class: 'meter', role: 'meter', 'aria-valuemin': '0', 'aria-valuemax': '100',
                            'aria-valuenow': String(Math.round(share * 100))},
      h('span', {style: 'width:' + Math.min(100, share * 100).toFixed(1) + '%',
                 class: share >= 1 ? 'full' : share >= 0.8 ? 'high' : ''}));
    return h('article', attrs, head,
      h('dl', {class: 'figures'},
        h('div', {}, h('dt', {}, 'Balance'), h('dd', {class: 'balance'}, num(balance))),
        h('div', {}, h('dt', {}, 'Used'), h('dd', {class: 'usage'}, num(usage))),
        h('div', {}, h('dt', {}, 'Of period'), h('dd', {class: 'percent'}, percents.format(share))),
        overage ? h('div', {}, h('dt', {}, 'Overage'), h('dd', {class: 'overage'}, num(overage))) : ''),
      meter,
      h('p', {class: 'limit'}, e.isSoftLimit
        ? 'Soft limit: usage can continue past the balance'
        : 'Hard limit: access stops when the balance runs out'),
      h('p', {class: 'reset'}, 'Period ' + days.format(new Date(p.from)) + ' – ' + days.format(new Date(p.to)) +
        ' · resets ' + relative(new Date(p.to)) + ' (' + dates.format(new Date(p.to)) + ')'),
      chart(e, histories[e.id] || []));
  }

  function configItems(config) {
    if (typeof config !== 'object' || Array.isArray(config)) return [h('div', {}, h('dd', {}, JSON.stringify(config)))];
    const entries = Object.entries(config).sort((a, b) => a[0].localeCompare(b[0])); // stored order may vary
    return entries.map(([k, val]) => h('div', {},
      h('dt', {}, k), h('dd', {}, typeof val === 'string' ? val : JSON.stringify(val))));
  }

  function relative(when) {
    const ms = when.getTime() - Date.now();
    if (ms <= 0) return 'now';
    const d = Math.floor(ms / 86400e3);
    const hr = Math.floor(ms / 3600e3);
    if (d >= 1) return 'in ' + d + (d === 1 ? ' day' : ' days');
    if (hr >= 1) return 'in ' + hr + (hr === 1 ? ' hour' : ' hours');
    return 'in ' + Math.max(1, Math.round(ms / 60e3)) + ' min';
  }

  // Usage per window (bars, left scale) and the balance (line, right scale) over the current period.
  function chart(e, windows) {
    // Drawn at the width it is shown (so its text keeps its size on a phone), redrawn on resize.
    const shown = document.getElementById('features').clientWidth - 34;
    const W = Math.round(Math.max(280, Math.min(1000, shown || 600))), H = 180, L = 44, R = 44, T = 10, B = 24;
    const from = Date.parse(e.currentUsagePeriod.from);
    const to = Date.parse(e.currentUsagePeriod.to);
    const now = Math.min(Date.now(), to);
    const x = (t) => L + (Math.max(from, Math.min(to, t)) - from) / (to - from) * (W - L - R);
    const maxUse = Math.max(1e-9, ...windows.map((w) => w.usage));
    // The history lists the windows with usage only: the balance steps to each window's start
    // (grants, resets), slopes down over it, stays flat in between, and ends at the current balance.
    const points = [];
    let level = windows.length ? windows[0].balanceAtStart : (e.value.balance || 0);
    points.push([from, level]);
    for (const w of windows) {
      const t0 = Date.parse(w.period.from);
      points.push([t0, level], [t0, w.balanceAtStart]);
      level = Math.max(0, w.balanceAtStart - w.usage);
      points.push([Math.min(now, Date.parse(w.period.to)), level]);
    }
    points.push([now, level], [now, e.value.balance || 0]);
    const maxBal = Math.max(1e-9, ...points.map((pt) => pt[1]));
    const yU = (u) => H - B - u / maxUse * (H - T - B);
    const yB = (b) => H - B - b / maxBal * (H - T - B);
    const hourly = (to - from) <= 48 * 3600e3;
    const label = (t) => (hourly ? hours : days).format(new Date(t));
    const g = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
      'aria-label': `Usage per ${hourly ? 'hour' : 'day'} and balance, ${label(from)} to ${label(to)}`});
    g.append(svg('line', {x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'axis'}));
    for (const w of windows) {
      const x0 = x(Date.parse(w.period.from)), x1 = x(Date.parse(w.period.to));
      const bar = svg('rect', {x: (x0 + 0.5).toFixed(1), width: Math.max(1, x1 - x0 - 1).toFixed(1),
        y: yU(w.usage).toFixed(1), height: (H - B - yU(w.usage)).toFixed(1), class: 'bar'});
      bar.append(svg('title', {}, label(Date.parse(w.period.from)) + ': ' + num(w.usage) + ' used'));
      g.append(bar);
    }
    g.append(svg('polyline', {class: 'balance-line', fill: 'none',
      points: points.map((pt) => x(pt[0]).toFixed(1) + ',' + yB(pt[1]).toFixed(1)).join(' ')}));
    g.append(svg('text', {x: L - 6, y: T + 8, class: 'tick use', 'text-anchor': 'end'}, num(maxUse)));
    g.append(svg('text', {x: L - 6, y: H - B, class: 'tick use', 'text-anchor': 'end'}, '0'));
    g.append(svg('text', {x: W - R + 6, y: T + 8, class: 'tick bal'}, num(maxBal)));
    g.append(svg('text', {x: L, y: H - 6, class: 'tick'}, label(from)));
    g.append(svg('text', {x: W - R, y: H - 6, class: 'tick', 'text-anchor': 'end'}, label(to)));
    const legend = h('p', {class: 'legend'},
      h('span', {class: 'key use'}), hourly ? 'used per hour' : 'used per day',
      h('span', {class: 'key bal'}), 'balance');
    return h('figure', {class: 'chart-box'}, g, legend);
  }

  // ------------------------------------------------------------------ live updates

  function applyUpdate(u) {
    seq += 1;
    latest[u.featureKey] = {value: u.value, asOf: u.asOf, seq: seq};
    const e = entitlements.find((x) => x.featureKey === u.featureKey);
    if (!e || (u.entitlementId || null) !== e.id || u.cause === 'ENTITLEMENT') {
      load(); // an entitlement came or went
      return;
    }
    if (u.cause === 'CURRENT' && JSON.stringify(u.value) === JSON.stringify(e.value)) return;
    e.value = u.value;
    const old = document.querySelector('[data-feature="' + CSS.escape(e.featureKey) + '"]');
    if (old) old.replaceWith(card(e));
    clearTimeout(applyUpdate.timer);
    applyUpdate.timer = setTimeout(load, 300); // the chart follows
  }

  function subscribe() {
    if (!window.WebSocket) { setLive('unavailable', 'Live updates unavailable'); return; }
    client = CreditgateWs.connect({
      url: CreditgateWs.wsUrl('graphql'),
      connectionParams: {Authorization: 'Bearer ' + token},
      onState: function (state) {
        if (state === 'connecting') setLive('connecting', 'Connecting…');
        else if (state === 'live') setLive('live', 'Live');
        else if (state === 'retrying') setLive('connecting', 'Reconnecting…');
        else if (state === 'refused') {
          client = null;
          load().then(() => { if (!stopped) refuse('UNAUTHENTICATED', claims && claims.e * 1000 <= Date.now() ? 'expired' : 'invalid'); });
        } else setLive('unavailable', 'Live updates unavailable: reload to see new usage');
      },
    });
    client.subscribe({query: UPDATES, variables: {s: subject}}, {
      next: function (payload) {
        if (payload.data && payload.data.entitlementValues) applyUpdate(payload.data.entitlementValues);
      },
      error: function (errors) {
        const err = errors && errors[0];
        const code = err && err.extensions && err.extensions.code;
        if (code === 'FORBIDDEN' || code === 'UNAUTHENTICATED') refuse(code, err.message);
        else {
          if (client) { client.close(); client = null; }
          setLive('unavailable', 'Live updates unavailable: reload to see new usage');
        }
      },
    });
  }

  let lastWidth = window.innerWidth;
  window.addEventListener('resize', () => {
    clearTimeout(render.timer);
    render.timer = setTimeout(() => {
      if (window.innerWidth !== lastWidth && entitlements.length && !stopped) { lastWidth = window.innerWidth; render(); }
    }, 150);
  });

  // ------------------------------------------------------------------ start

  if (subject) document.getElementById('title').textContent = 'Usage · ' + subject;
  if (!token) {
    document.body.dataset.state = 'refused';
    notice('error', 'No access token', 'Open this page with the link from your account (it ends in #token=…).');
  } else if (!subject) {
    refuse('UNAUTHENTICATED', 'invalid');
  } else if (claims && claims.e * 1000 <= Date.now()) {
    refuse('UNAUTHENTICATED', 'expired');
  } else {
    load().then(() => { if (!stopped) subscribe(); });
    if (claims) {
      const left = claims.e * 1000 - Date.now();
      if (left < 2 ** 31) setTimeout(() => refuse('UNAUTHENTICATED', 'expired'), left);
    }
  }
})();
