// leadscore's web console: the leaderboard, one contact's score explained over time, the rules with their
// statistics, and a what-if replay of changed rules. It reads the /v1 API of the instance that serves it,
// with the bearer token when the instance needs one, and changes nothing.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
const TOKEN_KEY = 'leadscore.token';
const REFRESH_MS = 2000;
/** Line colours of the groups in the chart, in the rules' order. */
const GROUP_COLORS = ['#2e8b57', '#8a5cc2', '#c26a00', '#b3261e', '#00838f', '#6d4c41'];
let refreshTimer = null;
let rulesCache = null;

// ---- DOM helpers -------------------------------------------------------------------------------------

/** An element with attributes (`text` sets its text) and children; text is never parsed as HTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attrs);
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttributes(node, attrs);
  node.append(...children);
  return node;
}

function setAttributes(node, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
}

function table(id, headers, caption) {
  const head = el('tr', {}, ...headers.map((header) => el('th', { scope: 'col', text: header })));
  return el('div', { class: 'scroll' },
    el('table', { id }, caption ? el('caption', { text: caption }) : null, el('thead', {}, head), el('tbody')));
}

function row(attrs, ...cells) {
  return el('tr', attrs, ...cells.map((cell) => (cell instanceof Node ? el('td', {}, cell) : el('td', { text: cell }))));
}

// ---- Formatting --------------------------------------------------------------------------------------

const fixed = (value) => Number(value).toFixed(2);
/** A signed number as `leadscore replay` prints it: +25.00, -3.10. */
function signed(value) {
  const text = fixed(value);
  return text.startsWith('-') ? text : `+${text}`;
}
function localTime(value) {
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}
const timeCell = (value) => el('time', { datetime: value, title: value, text: localTime(value) });

// ---- API ---------------------------------------------------------------------------------------------

/** Fetches a /v1 path as JSON; asks for the token on 401 and retries; throws with the server's message. */
async function api(path, options = {}) {
  for (;;) {
    const headers = { ...(options.headers || {}) };
    const token = localStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      await askForToken();
      continue;
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error((body && body.error) || `${path} answered ${response.status}`);
    return body;
  }
}

function askForToken() {
  const form = document.getElementById('token-form');
  const input = document.getElementById('token');
  form.hidden = false;
  input.focus();
  return new Promise((resolve) => {
    form.onsubmit = (submitted) => {
      submitted.preventDefault();
      localStorage.setItem(TOKEN_KEY, input.value);
      input.value = '';
      form.hidden = true;
      resolve();
    };
  });
}

async function rules() {
  if (!rulesCache) rulesCache = await api('/v1/rules');
  return rulesCache;
}

function showAlert(message) {
  const alert = document.getElementById('alert');
  alert.textContent = message;
  alert.hidden = !message;
}

const ready = (done) => { document.body.dataset.ready = done ? 'true' : 'false'; };

// ---- Routing -----------------------------------------------------------------------------------------

async function route() {
  clearInterval(refreshTimer);
  refreshTimer = null;
  rulesCache = null;
  showAlert('');
  const [page, ...rest] = location.hash.replace(/^#\/?/, '').split('/');
  const main = document.getElementById('main');
  main.replaceChildren();
  ready(false);
  const pages = { leaderboard: leaderboardPage, contact: contactPage, rules: rulesPage, whatif: whatifPage };
  const name = pages[page] ? page : 'leaderboard';
  document.body.dataset.page = name;
  for (const link of document.querySelectorAll('nav a')) {
    link.toggleAttribute('aria-current', link.getAttribute('href') === `#/${name}`);
  }
  try {
    await pages[name](main, decodeURIComponent(rest.join('/')));
  } catch (error) {
    showAlert(error.message);
    ready(true);
  }
}

// ---- Leaderboard -------------------------------------------------------------------------------------

async function leaderboardPage(main) {
  const scorecard = (await rules()).scorecard;
  const select = (id, label, options) => el('label', { for: id, text: label },
    el('select', { id }, ...options.map(([value, text]) => el('option', { value, text }))));
  const controls = el('div', { class: 'controls' },
    select('ranking', 'Rank by', [['total', 'total'], ...scorecard.groups.map((group) => [group.name, group.name])]),
    select('phase', 'Phase', [['', 'all'], ...scorecard.phases.map((phase) => [phase.name, phase.name])]),
    scorecard.grades ? select('grade', 'Grade', [['', 'all'], ...['A', 'B', 'C', 'D'].map((grade) => [grade, grade])]) : null,
    el('label', { for: 'live', class: 'check' }, el('input', { id: 'live', type: 'checkbox', checked: true }), 'Live'),
    el('span', { id: 'leaderboard-at', class: 'muted', 'aria-live': 'polite' }));
  main.append(el('h1', { text: 'Leaderboard' }), controls, table('leaderboard', ['Rank', 'Contact', 'Score', 'Phase', 'Grade']),
    el('p', { id: 'restoring', class: 'muted' }));
  const draw = async () => {
    const query = new URLSearchParams({ limit: '50' });
    for (const id of ['ranking', 'phase', 'grade']) {
      const value = document.getElementById(id)?.value;
      if (value) query.set(id === 'ranking' ? 'group' : id, value);
    }
    const board = await api(`/v1/leaderboard?${query}`);
    if (document.body.dataset.page !== 'leaderboard') return;
    const rows = board.contacts.map((entry) => row({ 'data-contact': entry.contact }, String(entry.rank),
      el('a', { class: 'contact-link', href: `#/contact/${encodeURIComponent(entry.contact)}`, text: entry.contact }),
      fixed(entry.score), entry.phase, entry.grade || ''));
    document.querySelector('#leaderboard tbody').replaceChildren(...rows);
    document.getElementById('leaderboard-at').replaceChildren('as of ', timeCell(board.at));
    document.getElementById('restoring').textContent = board.restoring.length
      ? `Partitions ${board.restoring.join(', ')} are restoring: their contacts are missing for now.` : '';
    ready(true);
  };
  const live = () => {
    clearInterval(refreshTimer);
    refreshTimer = document.getElementById('live').checked
      ? setInterval(() => draw().catch((error) => showAlert(error.message)), REFRESH_MS) : null;
  };
  for (const id of ['ranking', 'phase', 'grade']) {
    document.getElementById(id)?.addEventListener('change', () => draw().catch((error) => showAlert(error.message)));
  }
  document.getElementById('live').addEventListener('change', live);
  await draw();
  live();
}

// ---- Contact -----------------------------------------------------------------------------------------

async function contactPage(main, id) {
  const path = `/v1/contacts/${encodeURIComponent(id)}`;
  const [contact, series, rulesAnswer] = await Promise.all([api(path), api(`${path}/series`), rules()]);
  const groups = rulesAnswer.scorecard.groups;
  const weight = (name) => (groups.find((group) => group.name === name) || { weight: 1 }).weight;
  main.append(el('h1', { id: 'contact-id', text: contact.contact }));
  const facts = el('dl', { class: 'facts' },
    el('dt', { text: 'Total' }), el('dd', { id: 'contact-total', 'data-value': contact.total, text: fixed(contact.total) }),
    el('dt', { text: 'Phase' }), el('dd', { id: 'contact-phase', text: contact.phase }),
    el('dt', { text: 'Grade' }), el('dd', { id: 'contact-grade', text: contact.grade || '–' }),
    el('dt', { text: 'Values at' }), el('dd', {}, timeCell(contact.at)),
    el('dt', { text: 'Last event' }), el('dd', {}, timeCell(contact.clock)),
    contact.next_timer ? el('dt', { text: 'Next decay crossing' }) : null,
    contact.next_timer ? el('dd', {}, timeCell(contact.next_timer)) : null);
  main.append(facts);
  if (contact.disqualified) {
    main.append(el('p', { id: 'disqualified', class: 'warning', text: `Disqualified: ${contact.disqualified}` }));
  }
  const parts = contact.groups.map((group) => `${group.group} ${fixed(group.value)} × ${weight(group.group)}`);
  main.append(el('p', { class: 'sum', text: `Total ${fixed(contact.total)} = ${parts.join(' + ')}` }));
  main.append(el('h2', { text: 'Score over time' }), scoreChart(series));
  main.append(el('h2', { text: 'Why: points per rule, decayed to now' }),
    el('div', { class: 'groups' }, ...contact.groups.map((group) => groupBars(group, weight(group.group)))));
  main.append(el('h2', { text: 'Thresholds fired' }),
    el('ul', { id: 'thresholds-fired' }, ...contact.thresholds_fired.map((name) => el('li', { text: name }))));
  if (!contact.thresholds_fired.length) main.append(el('p', { class: 'muted', text: 'None.' }));
  main.append(el('h2', { text: 'History' }),
    table('history', ['Time', 'Source', 'Group', 'Change', 'Value after', 'Reason', 'By'], 'Oldest first'));
  document.querySelector('#history tbody').append(...contact.history.map((entry) => row({},
    timeCell(entry.ts), entry.source, entry.group || '', signed(entry.delta), fixed(entry.value_after),
    entry.reason || '', entry.actor || '')));
  ready(true);
}

/** One group's explanation as horizontal bars from a zero axis, summing visibly to its value. */
function groupBars(group, weight) {
  const lines = group.explanation;
  const low = Math.min(0, ...lines.map((line) => line.points));
  const high = Math.max(0, ...lines.map((line) => line.points));
  const span = high - low || 1;
  const zero = (-low / span) * 100;
  const bar = (source, points, extra = '') => {
    const left = points < 0 ? zero + (points / span) * 100 : zero;
    const width = (Math.abs(points) / span) * 100;
    return el('div', { class: `bar-row${extra}` },
      el('span', { class: 'bar-label', text: source }),
      el('span', { class: 'bar-track' },
        el('span', { class: `bar${points < 0 ? ' negative' : ''}`, 'data-source': source, 'data-points': points,
          style: `left:${left}%;width:${width}%`, title: `${source}: ${fixed(points)}` }),
        el('span', { class: 'zero', style: `left:${zero}%` })),
      el('span', { class: 'bar-value', text: fixed(points) }));
  };
  return el('section', { class: 'group', 'data-group': group.group, 'data-value': group.value, 'aria-label': group.group },
    el('h3', { text: `${group.group}: ${fixed(group.value)}` },
      el('span', { class: 'muted', text: ` weight ${weight}, ${fixed(group.value * weight)} of the total` })),
    ...lines.map((line) => bar(line.source, line.points, line.source === 'clamp' ? ' clamp' : '')),
    el('div', { class: 'bar-row total-row' }, el('span', { class: 'bar-label', text: 'sum' }), el('span'),
      el('span', { class: 'bar-value', text: fixed(lines.reduce((sum, line) => sum + line.points, 0)) })),
    lines.length ? null : el('p', { class: 'muted', text: 'No points.' }));
}

/** A time axis label, as precise as the axis's span needs. */
function tickLabel(t, span) {
  const hour = 3600000;
  const parts = span < hour ? { hour: '2-digit', minute: '2-digit', second: '2-digit' }
    : span < 48 * hour ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }
      : { year: 'numeric', month: 'short', day: 'numeric' };
  return new Date(t).toLocaleString(undefined, parts);
}

/** The total over time: decay curves between events, a point per history entry, thresholds and phases. */
function scoreChart(series) {
  const width = 800, height = 300, pad = { left: 48, right: 16, top: 16, bottom: 36 };
  const points = series.points;
  const totals = series.thresholds.filter((threshold) => threshold.target === 'total');
  // Each group that ever held points gets a thin line of its own, with the thresholds that watch it.
  const shown = series.groups.map((name, index) => ({ name, index, color: GROUP_COLORS[index % GROUP_COLORS.length] }))
    .filter((group) => points.some((point) => point.groups[group.index] !== 0));
  const watched = series.thresholds.filter((threshold) => shown.some((group) => group.name === threshold.target));
  const times = points.map((point) => point.t);
  const t0 = Math.min(...times), t1 = Math.max(...times, t0 + 1);
  const values = [0, ...points.map((point) => point.total), ...totals.map((threshold) => threshold.at),
    ...shown.flatMap((group) => points.map((point) => point.groups[group.index])), ...watched.map((threshold) => threshold.at)];
  const v0 = Math.min(...values), v1 = Math.max(...values, v0 + 1);
  const x = (t) => pad.left + ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - ((v - v0) / (v1 - v0)) * (height - pad.top - pad.bottom);
  const chart = svg('svg', { id: 'score-chart', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Total score over time: ${series.events.length} changes, now ${fixed(points.at(-1)?.total ?? 0)}` });
  for (let tick = 0; tick <= 4; tick += 1) {
    const value = v0 + ((v1 - v0) * tick) / 4, t = t0 + ((t1 - t0) * tick) / 4;
    chart.append(svg('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }),
      svg('text', { class: 'axis', x: pad.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, document.createTextNode(value.toFixed(0))),
      svg('text', { class: 'axis', x: x(t), y: height - 12, 'text-anchor': tick === 0 ? 'start' : tick === 4 ? 'end' : 'middle' },
        document.createTextNode(tickLabel(t, t1 - t0))));
  }
  for (const threshold of totals) {
    chart.append(svg('line', { class: 'threshold', 'data-name': threshold.name, x1: pad.left, x2: width - pad.right, y1: y(threshold.at), y2: y(threshold.at) }),
      svg('text', { class: 'threshold-label', x: width - pad.right - 4, y: y(threshold.at) - 4, 'text-anchor': 'end' },
        document.createTextNode(`${threshold.name} ${threshold.at}`)));
  }
  for (const phase of series.phases) {
    chart.append(svg('line', { class: 'phase-mark', 'data-phase': phase.phase, x1: x(phase.t), x2: x(phase.t), y1: pad.top, y2: height - pad.bottom }),
      svg('text', { class: 'phase-label', x: x(phase.t) + 4, y: pad.top + 10 }, document.createTextNode(phase.phase)));
  }
  const line = (value) => points.map((point, index) => `${index ? 'L' : 'M'}${x(point.t).toFixed(1)},${y(value(point)).toFixed(1)}`).join('');
  for (const group of shown) {
    chart.append(svg('path', { class: 'group-line', 'data-group': group.name, stroke: group.color, d: line((point) => point.groups[group.index]) }));
    for (const threshold of watched.filter((watching) => watching.target === group.name)) {
      chart.append(svg('line', { class: 'group-threshold', 'data-name': threshold.name, stroke: group.color, x1: pad.left, x2: width - pad.right, y1: y(threshold.at), y2: y(threshold.at) }),
        svg('text', { class: 'threshold-label', x: pad.left + 4, y: y(threshold.at) - 4, fill: group.color },
          document.createTextNode(`${threshold.name} ${threshold.at} (${group.name})`)));
    }
  }
  chart.append(svg('path', { class: 'total-line', d: line((point) => point.total) }));
  for (const event of series.events) {
    const after = points.filter((point) => point.t === event.t).at(-1);
    if (!after) continue;
    chart.append(svg('circle', { class: `point ${event.kind}`, 'data-t': event.t, cx: x(event.t), cy: y(after.total), r: 4 },
      svg('title', {}, document.createTextNode(`${localTime(event.ts)}: ${event.source} ${signed(event.delta)}${event.group ? ` (${event.group})` : ''}`))));
  }
  const legend = el('p', { class: 'legend' }, el('span', { class: 'swatch total' }), 'total',
    ...shown.flatMap((group) => [el('span', { class: 'swatch', style: `background:${group.color}` }), group.name]));
  return el('div', { class: 'chart' }, chart, legend);
}

// ---- Rules -------------------------------------------------------------------------------------------

async function rulesPage(main) {
  const answer = await rules();
  const { scorecard } = answer;
  const phases = answer.phases;
  main.append(el('h1', { text: 'Rules' }),
    el('p', {}, 'Version in force ', el('code', { id: 'rules-version', text: answer.version }),
      ', loaded ', el('span', { id: 'rules-loaded' }, timeCell(answer.loaded_at)),
      `. Statistics count what this instance scored on partitions ${answer.partitions.join(', ')}.`));
  main.append(el('h2', { text: 'Groups' }), table('groups', ['Group', 'Range', 'Weight', 'Decay']));
  main.querySelector('#groups tbody').append(...scorecard.groups.map((group) =>
    row({}, group.name, `${group.min} … ${group.max}`, String(group.weight), group.decay)));
  main.append(el('h2', { text: 'Thresholds' }), table('thresholds', ['Threshold', 'On', 'Fires at', 'Falls below', 'Advances to']));
  main.querySelector('#thresholds tbody').append(...scorecard.thresholds.map((threshold) =>
    row({}, threshold.name, threshold.target, fixed(threshold.at), fixed(threshold.down), threshold.advance_to || '')));
  if (scorecard.grades) {
    const grades = scorecard.grades;
    main.append(el('p', { text: `Grades from ${grades.group}: A from ${grades.a}, B from ${grades.b}, C from ${grades.c}, D below.` }));
  }
  main.append(el('h2', { text: 'Rules and what they did' }),
    table('rules', ['Rule', 'Event', 'Group', 'Fires', 'Points', ...phases.map((phase) => `At ${phase}`)]));
  main.querySelector('#rules tbody').append(...answer.rules.map((rule) => row({ 'data-rule': rule.id },
    rule.id, rule.on, rule.group || '', String(rule.fires), fixed(rule.points),
    ...phases.map((phase) => (rule.conversions[phase] === undefined ? '' : fixed(rule.conversions[phase]))))));
  main.append(el('h2', { text: 'Conversions' }), table('conversions', ['Phase', 'Contacts entered', 'Points held on entry, top sources', 'Resets']));
  main.querySelector('#conversions tbody').append(...answer.conversions.map((conversion) => row({}, conversion.phase,
    String(conversion.entered),
    conversion.attribution.slice(0, 5).map((line) => `${line.source} ${fixed(line.points)}`).join(', '),
    (scorecard.phases.find((phase) => phase.name === conversion.phase)?.resets || []).join(', '))));
  ready(true);
}

// ---- What-if -----------------------------------------------------------------------------------------

function whatifPage(main) {
  const fileInto = (inputId, areaId) => document.getElementById(inputId).addEventListener('change', async (changed) => {
    const [file] = changed.target.files;
    if (file) document.getElementById(areaId).value = await file.text();
  });
  main.append(el('h1', { text: 'What if the rules changed?' }),
    el('p', { class: 'muted', text: 'Replays events with the rules you give and with the rules in force, in the server, and shows what would differ. Nothing live changes.' }),
    el('form', { id: 'whatif-form', class: 'whatif' },
      el('label', { for: 'whatif-rules', text: 'Rules file (TOML)' }),
      el('textarea', { id: 'whatif-rules', rows: 10, spellcheck: 'false', required: true }),
      el('label', { for: 'whatif-rules-file', class: 'file', text: 'or load a rules file ' },
        el('input', { id: 'whatif-rules-file', type: 'file', accept: '.toml,text/plain' })),
      el('label', { for: 'whatif-events', text: 'Events (JSON lines)' }),
      el('textarea', { id: 'whatif-events', rows: 6, spellcheck: 'false' }),
      el('label', { for: 'whatif-events-file', class: 'file', text: 'or load an export ' },
        el('input', { id: 'whatif-events-file', type: 'file', accept: '.jsonl,.json,text/plain' })),
      el('label', { for: 'whatif-demo', class: 'check' }, el('input', { id: 'whatif-demo', type: 'checkbox' }), "Use the demo's stream instead"),
      el('button', { id: 'whatif-run', type: 'submit', text: 'Run' }),
      el('p', { id: 'whatif-status', 'aria-live': 'polite' }),
      el('p', { id: 'whatif-error', class: 'warning', role: 'alert', hidden: true })),
    el('div', { id: 'whatif-results' }));
  fileInto('whatif-rules-file', 'whatif-rules');
  fileInto('whatif-events-file', 'whatif-events');
  document.getElementById('whatif-form').addEventListener('submit', (submitted) => {
    submitted.preventDefault();
    runWhatif().catch((error) => {
      const box = document.getElementById('whatif-error');
      box.textContent = error.message;
      box.hidden = false;
      document.getElementById('whatif-status').textContent = '';
      ready(true);
    });
  });
  ready(true);
}

async function runWhatif() {
  const demo = document.getElementById('whatif-demo').checked;
  const body = { rules: document.getElementById('whatif-rules').value };
  if (!demo) body.events = document.getElementById('whatif-events').value;
  document.getElementById('whatif-error').hidden = true;
  document.getElementById('whatif-status').textContent = 'Replaying…';
  document.getElementById('whatif-results').replaceChildren();
  ready(false);
  const report = await api('/v1/whatif', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  document.getElementById('whatif-status').textContent = `Replayed ${report.events} events.`;
  const results = document.getElementById('whatif-results');
  results.append(el('p', { id: 'whatif-summary', text:
    `${report.live_version} → ${report.new_version}: ${report.compared} contacts compared, ${report.unchanged} unchanged, ` +
    `${report.phase_differs} in another phase, ${report.threshold_differs} with another threshold status; ` +
    `mean change of the total ${signed(report.mean_delta)}.${report.rejected ? ` ${report.rejected} lines were not valid events.` : ''}` }));
  results.append(el('h2', { text: 'Changes of the total' }), histogram(report.histogram));
  results.append(el('h2', { text: 'Phase moves' }), table('whatif-phases', ['From', 'To', 'Contacts']));
  results.querySelector('#whatif-phases tbody').append(...report.phase_moves.map((move) => row({}, move.from, move.to, String(move.contacts))));
  results.append(el('h2', { text: 'Thresholds' }), table('whatif-thresholds', ['Threshold', 'Gained', 'Lost']));
  results.querySelector('#whatif-thresholds tbody').append(...report.thresholds.map((threshold) =>
    row({}, threshold.name, String(threshold.gained), String(threshold.lost))));
  results.append(el('h2', { text: 'Top movers' }), moverBars(report.top_movers),
    table('whatif-movers', ['Contact', 'Live', 'New', 'Change', 'Phase live', 'Phase new']));
  results.querySelector('#whatif-movers tbody').append(...report.top_movers.map((mover) => {
    const line = row({ 'data-contact': mover.contact }, mover.contact, fixed(mover.live), fixed(mover.replayed), '',
      mover.live_phase, mover.replayed_phase);
    const cell = line.children[3];
    cell.className = 'delta';
    cell.textContent = signed(mover.delta);
    return line;
  }));
  ready(true);
}

/** The top movers' changes as bars from a zero axis, largest first. */
function moverBars(movers) {
  const most = Math.max(1, ...movers.map((mover) => Math.abs(mover.delta)));
  const low = Math.min(0, ...movers.map((mover) => mover.delta));
  const span = Math.max(0, ...movers.map((mover) => mover.delta)) - low || 1;
  const zero = (-low / span) * 100;
  return el('div', { class: 'group movers', role: 'img', 'aria-label': `Changes of the top ${movers.length} movers, largest ${fixed(most)}` },
    ...movers.map((mover) => el('div', { class: 'bar-row' },
      el('span', { class: 'bar-label', text: mover.contact }),
      el('span', { class: 'bar-track' },
        el('span', { class: `bar${mover.delta < 0 ? ' negative' : ''}`, title: `${mover.contact}: ${signed(mover.delta)}`,
          style: `left:${mover.delta < 0 ? zero + (mover.delta / span) * 100 : zero}%;width:${(Math.abs(mover.delta) / span) * 100}%` }),
        el('span', { class: 'zero', style: `left:${zero}%` })),
      el('span', { class: 'bar-value', text: signed(mover.delta) }))));
}

function histogram(buckets) {
  const width = 800, height = 220, pad = { left: 40, bottom: 48, top: 16 };
  const most = Math.max(1, ...buckets.map((bucket) => bucket.contacts));
  const slot = (width - pad.left) / buckets.length;
  const chart = svg('svg', { id: 'whatif-histogram', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `Contacts per change of the total: ${buckets.map((bucket) => `${bucket.bucket}: ${bucket.contacts}`).join(', ')}` });
  buckets.forEach((bucket, index) => {
    const barHeight = (bucket.contacts / most) * (height - pad.top - pad.bottom);
    const x = pad.left + index * slot + 4;
    chart.append(svg('rect', { class: 'bucket', x, y: height - pad.bottom - barHeight, width: slot - 8, height: barHeight },
      svg('title', {}, document.createTextNode(`${bucket.bucket}: ${bucket.contacts}`))),
    svg('text', { class: 'axis', x: x + (slot - 8) / 2, y: height - pad.bottom - barHeight - 4, 'text-anchor': 'middle' },
      document.createTextNode(String(bucket.contacts))),
    svg('text', { class: 'axis', x: x + (slot - 8) / 2, y: height - pad.bottom + 16, 'text-anchor': 'middle' },
      document.createTextNode(bucket.bucket)));
  });
  return el('div', { class: 'chart' }, chart);
}

window.addEventListener('hashchange', route);
route();
