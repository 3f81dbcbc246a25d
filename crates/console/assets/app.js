// The console: the API's own routes, called through the console's signing proxy
// (`/console/api/<route>`), with the identity chosen in the header bar. No framework, no
// build step: elements are made with `el`, and data only ever reaches the page as text.

const PROXY = '/console/api';
const STEPS = ['QUEUED', 'RUNNING', 'PACKAGING', 'SUCCEEDED'];
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
const POLL_MS = 1000;
/** Reads of an ended export's history, for the events that follow its end. */
const SETTLE_POLLS = 5;
/** Column types whose values line up on the right. */
const NUMERIC = /^(smallint|integer|int|bigint|decimal|numeric|real|double|float)/i;

const state = {
  identity: null,
  datasets: null, // {identity, list}: the catalogue of the identity that read it
  poll: null, // the timer of the export on screen, while it runs
  cursors: [], // the cursors of the list pages before the one on screen
  view: 0, // counts the views asked for: an answer for an older one is not shown
  token: null, // the console's token, when it was started with one
};

const main = document.getElementById('main');

// ---- small helpers -----------------------------------------------------------------------

/** An element with attributes (`on*` become listeners) and children (strings become text). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'class') node.className = value;
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** A local, readable time for milliseconds since the epoch. */
function localTime(ms) {
  if (ms === undefined || ms === null) return '';
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

function timeEl(ms) {
  return el('time', { datetime: new Date(ms).toISOString() }, localTime(ms));
}

function bytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}

function count(n) {
  return n === undefined || n === null ? '' : Number(n).toLocaleString();
}

function duration(ms) {
  if (ms === undefined || ms === null) return '';
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const whole = Math.round(s);
  return `${Math.floor(whole / 60)} min ${whole % 60} s`;
}

/** Calls the API as the chosen identity; the answer's status, JSON (if any) and time taken. */
async function api(method, path, { body, form, headers = {} } = {}) {
  const init = { method, headers: { ...consoleHeaders(), ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['content-type'] = 'application/json';
  }
  if (form !== undefined) {
    init.body = form.toString();
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  const started = performance.now();
  let response;
  try {
    response = await fetch(PROXY + path, init);
  } catch (e) {
    return { status: 0, ok: false, json: { error: { code: 'network', message: `the console could not be reached: ${e.message}` } }, elapsed: 0 };
  }
  const text = await response.text();
  const elapsed = performance.now() - started;
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: response.status, ok: response.ok, json, text, elapsed };
}

/** What every call to the console carries: the identity, and the console's token if any. */
function consoleHeaders() {
  const headers = { 'x-console-identity': state.identity || '' };
  if (state.token) headers['x-console-token'] = state.token;
  return headers;
}

/** The API's error as one line. */
function errorText(reply) {
  const error = reply.json && reply.json.error;
  if (error) return `${error.message} (${reply.status} ${error.code})`;
  return `the API answered ${reply.status}`;
}

function notice(text) {
  return el('p', { class: 'notice', role: 'alert' }, text);
}

function heading(text) {
  return el('h1', { tabindex: '-1' }, text);
}

/** Puts a view on screen, unless another has been asked for since `view` was. */
function show(view, ...nodes) {
  if (view !== state.view) return;
  main.replaceChildren(...nodes);
  const h1 = main.querySelector('h1');
  if (h1 && document.activeElement !== document.getElementById('identity')) h1.focus();
}

/** The chosen identity's catalogue, kept for it alone: an answer that arrives after the
 * identity changed is not kept (it was another caller's). */
async function catalogue() {
  const identity = state.identity;
  if (state.datasets && state.datasets.identity === identity) return state.datasets.list;
  const reply = await api('GET', '/datasets');
  if (!reply.ok) throw new Error(errorText(reply));
  if (state.identity === identity) state.datasets = { identity, list: reply.json.datasets };
  return reply.json.datasets;
}

// ---- the catalogue -----------------------------------------------------------------------

async function showCatalogue(view) {
  const datasets = await catalogue();
  show(view,
    heading('Datasets'),
    el('p', { class: 'lede' }, 'Every export this API offers. Open one to look it up or to export it.'),
    el('ul', { class: 'datasets', id: 'datasets' }, datasets.map((d) => el('li', { class: 'dataset', 'data-dataset': d.name },
      el('h2', {}, el('a', { href: `#/datasets/${encodeURIComponent(d.name)}` }, d.name),
        d.lookup ? el('span', { class: 'badge', title: `lookups of up to ${d.lookup.max_rows} rows, cached ${d.lookup.cache_seconds} s` }, 'lookup') : null),
      el('p', {}, d.description),
      d.params.length
        ? el('ul', {}, d.params.map((p) => el('li', {},
          el('code', {}, p.name), ` ${typeName(p)}`, p.bound ? ' (yours, fixed)' : (p.required ? '' : ' (optional)'), p.description ? ` – ${p.description}` : '')))
        : el('p', { class: 'meta' }, 'No parameters.'),
    ))),
  );
}

// ---- one dataset: the form, a lookup, an export ------------------------------------------

/** A type as people read it: `enum(A|B)` becomes `one of A, B`. */
function typeName(p) {
  const values = p.rules && p.rules.values;
  if (!values) return p.type;
  return isList(p.type) ? `list of: ${values.join(', ')}` : `one of ${values.join(', ')}`;
}

function scalarType(type) {
  return type.startsWith('list<') ? type.slice(5, -1) : type;
}

function isList(type) {
  return type.startsWith('list<');
}

function fieldId(name) {
  return `param-${name}`;
}

/** The input for one parameter, shaped by its type and rules. */
function paramInput(p) {
  const id = fieldId(p.name);
  const rules = p.rules || {};
  const common = { id, name: p.name, 'aria-describedby': `${id}-hint ${id}-error`, 'data-type': p.type };
  const type = scalarType(p.type);
  if (!isList(p.type) && (type.startsWith('enum(') || type === 'boolean')) {
    const values = type === 'boolean' ? ['true', 'false'] : (rules.values || type.slice(5, -1).split('|'));
    return el('select', common,
      el('option', { value: '' }, p.required ? 'Choose…' : '(any)'),
      values.map((v) => el('option', { value: v }, v)));
  }
  if (isList(p.type)) {
    return el('input', { ...common, type: 'text', autocomplete: 'off', placeholder: 'comma-separated values' });
  }
  if (type === 'integer') {
    // Text, not type=number: a number field some browsers let letters into then reads as
    // empty, and the API would never see what was typed.
    return el('input', { ...common, type: 'text', inputmode: 'numeric', autocomplete: 'off' });
  }
  if (type === 'date') return el('input', { ...common, type: 'date' });
  if (type === 'timestamp') return el('input', { ...common, type: 'datetime-local', step: 1 });
  if (type.startsWith('decimal')) return el('input', { ...common, type: 'text', inputmode: 'decimal', autocomplete: 'off' });
  return el('input', { ...common, type: 'text', maxlength: rules.max_length, autocomplete: 'off' });
}

function hint(p) {
  const rules = p.rules || {};
  const parts = [p.rules && p.rules.values ? 'one of the listed values' : p.type];
  if (isList(p.type)) parts.push(`comma-separated${rules.max_items ? `, up to ${rules.max_items}` : ''}`);
  if (rules.min !== undefined) parts.push(`at least ${rules.min}`);
  if (rules.max !== undefined) parts.push(`at most ${rules.max}`);
  if (rules.max_length !== undefined) parts.push(`up to ${rules.max_length} characters`);
  if (rules.pattern) parts.push(`pattern ${rules.pattern}`);
  if (p.description) parts.push(p.description);
  return parts.join(' · ');
}

/** A parameter bound to the caller: its value is shown, fixed; no request may name it. */
function boundField(p) {
  const id = fieldId(p.name);
  const value = Array.isArray(p.value) ? p.value.join(', ') : (p.value === undefined || p.value === null ? 'none' : String(p.value));
  return el('div', { class: 'field bound', 'data-field': `params.${p.name}`, 'data-bound': p.bound },
    el('label', { for: id }, p.name),
    el('input', { id, type: 'text', value, readonly: true, 'aria-readonly': 'true', 'aria-describedby': `${id}-hint` }),
    el('p', { class: 'hint', id: `${id}-hint` }, `yours: set by your access (${p.bound}), not by this form`));
}

function paramField(p) {
  if (p.bound) return boundField(p);
  const id = fieldId(p.name);
  return el('div', { class: 'field', 'data-field': `params.${p.name}` },
    el('label', { for: id }, p.name, p.required ? '' : el('span', { class: 'optional' }, ' (optional)')),
    paramInput(p),
    el('p', { class: 'hint', id: `${id}-hint` }, hint(p)),
    el('p', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
}

function optionField(name, label, values, fallback) {
  const id = `option-${name}`;
  return el('div', { class: 'field', 'data-field': name },
    el('label', { for: id }, label),
    el('select', { id, name, 'aria-describedby': `${id}-error` }, values.map((v) => el('option', { value: v, selected: v === fallback }, v))),
    el('p', { class: 'error', id: `${id}-error`, 'aria-live': 'polite' }));
}

/** The form's parameters as the text typed, `name=value`: the API types each value by the
 * dataset's declaration, for a lookup's query string and an export's form alike. */
function readParams(dataset) {
  const pairs = [];
  for (const p of dataset.params) {
    // A bound parameter's value is the caller's: the API refuses a request that names it.
    if (p.bound) continue;
    // By id: a parameter may share its name with a property of the form itself.
    const raw = document.getElementById(fieldId(p.name)).value.trim();
    if (raw !== '') pairs.push([p.name, raw]);
  }
  return pairs;
}

function clearErrors(form) {
  for (const node of form.querySelectorAll('.error')) node.textContent = '';
  for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
}

/** Shows the API's error next to the field it names, or above the buttons if it names none. */
function showError(form, reply) {
  const error = (reply.json && reply.json.error) || {};
  // A list's item is named as `params.ids[1]`: its field is the list's.
  const name = error.field ? error.field.replace(/\[\d+\]$/, '') : null;
  const field = name ? form.querySelector(`[data-field="${CSS.escape(name)}"]`) : null;
  if (field) {
    field.querySelector('.error').textContent = error.message;
    const input = field.querySelector('input, select');
    input.setAttribute('aria-invalid', 'true');
    input.focus();
  } else {
    form.querySelector('.form-error').textContent = errorText(reply);
  }
}

async function showDataset(view, name) {
  const datasets = await catalogue();
  const dataset = datasets.find((d) => d.name === name);
  if (!dataset) {
    show(view, heading('No such dataset'), notice(`There is no dataset named '${name}'.`), el('p', {}, el('a', { href: '#/' }, 'All datasets')));
    return;
  }
  const result = el('section', { id: 'result', 'aria-label': 'Result' });
  const form = el('form', { id: 'dataset-form', novalidate: true },
    el('fieldset', {}, el('legend', {}, 'Parameters'),
      dataset.params.length ? dataset.params.map(paramField) : el('p', { class: 'meta' }, 'This dataset takes no parameters.')),
    dataset.lookup
      ? el('div', { class: 'actions' },
        el('button', { type: 'submit', value: 'lookup', id: 'lookup-button' }, 'Look up'),
        el('span', { class: 'meta' }, `rows at once, up to ${count(dataset.lookup.max_rows)}; answers are cached ${dataset.lookup.cache_seconds} s`))
      : el('p', { class: 'meta' }, 'This dataset is too large to look up: export it.'),
    el('fieldset', {}, el('legend', {}, 'Export'),
      el('div', { class: 'options' },
        optionField('format', 'Format', ['csv', 'parquet', 'json'], 'csv'),
        optionField('compression', 'Compression', ['none', 'gzip', 'zstd'], 'none'),
        optionField('archive', 'Archive', ['zip', 'tar.gz', 'none'], 'zip'),
        el('div', { class: 'field', 'data-field': 'notify' },
          el('label', { for: 'option-notify' }, 'Email the link to', el('span', { class: 'optional' }, ' (optional)')),
          el('input', { id: 'option-notify', name: 'notify', type: 'text', autocomplete: 'email', placeholder: 'comma-separated addresses', 'aria-describedby': 'option-notify-error' }),
          el('p', { class: 'error', id: 'option-notify-error', 'aria-live': 'polite' }))),
      el('div', { class: 'actions' }, el('button', { type: 'submit', value: 'export', id: 'export-button' }, 'Export'))),
    el('p', { class: 'error form-error', role: 'alert' }));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const action = event.submitter ? event.submitter.value : (dataset.lookup ? 'lookup' : 'export');
    const buttons = form.querySelectorAll('button');
    for (const b of buttons) b.disabled = true;
    clearErrors(form);
    try {
      if (action === 'lookup') await lookUp(form, dataset, result);
      else await exportIt(form, dataset);
    } catch (e) {
      form.querySelector('.form-error').textContent = e.message;
    } finally {
      for (const b of buttons) b.disabled = false;
    }
  });
  show(
    view,
    heading(dataset.name),
    el('p', { class: 'lede' }, dataset.description),
    form,
    result,
  );
}

async function lookUp(form, dataset, result) {
  const query = new URLSearchParams(readParams(dataset));
  const path = `/lookups/${encodeURIComponent(dataset.name)}${query.toString() ? `?${query}` : ''}`;
  const reply = await api('GET', path);
  if (!reply.ok) {
    result.replaceChildren();
    showError(form, reply);
    return;
  }
  const answer = reply.json;
  const source = answer.cached ? `from the cache (${answer.age_seconds} s old)` : 'from the warehouse';
  result.replaceChildren(
    el('h2', {}, 'Rows'),
    el('p', { class: 'meta', id: 'lookup-meta', role: 'status' },
      `${count(answer.row_count)} ${answer.row_count === 1 ? 'row' : 'rows'} · ${Math.round(reply.elapsed)} ms · ${source}`),
    el('div', { class: 'scroll' }, el('table', { id: 'lookup-table' },
      el('caption', { class: 'meta' }, `${dataset.name}: ${[...query].map(([k, v]) => `${k}=${v}`).join(' ') || 'no parameters'}`),
      el('thead', {}, el('tr', {}, answer.columns.map((c) => el('th', { scope: 'col', title: c.type }, c.name)))),
      el('tbody', {}, answer.rows.map((row) => el('tr', {}, answer.columns.map((c) => {
        const v = row[c.name];
        const text = v === null ? '' : String(v);
        const cls = [NUMERIC.test(c.type) ? 'number' : '', text.length <= 24 ? 'short' : ''].join(' ').trim();
        return el('td', { class: cls || undefined }, text);
      })))))));
  result.scrollIntoView({ block: 'start' });
}

async function exportIt(form, dataset) {
  // Sent as a form, as typed: `POST /exports` reads `params.<name>` by the catalogue.
  const body = new URLSearchParams({ dataset: dataset.name });
  for (const [name, value] of readParams(dataset)) body.append(`params.${name}`, value);
  for (const name of ['format', 'compression', 'archive', 'notify']) {
    const value = form.elements[name].value.trim();
    if (value !== '') body.append(name, value);
  }
  const reply = await api('POST', '/exports', { form: body });
  if (!reply.ok) {
    showError(form, reply);
    return;
  }
  location.hash = `#/exports/${encodeURIComponent(reply.json.request_id)}`;
}

// ---- one export: progress, history, download, cancel --------------------------------------

async function showExport(view, id) {
  const status = el('p', { id: 'job-status', class: 'status', role: 'status', tabindex: '-1' });
  const progress = el('ol', { class: 'progress', id: 'progress', 'aria-label': 'Progress' });
  const reason = el('p', { class: 'error', id: 'job-error', role: 'alert' });
  const facts = el('dl', { class: 'facts', id: 'job-facts' });
  const result = el('div', { id: 'job-result' });
  const cancel = el('button', { type: 'button', class: 'danger', id: 'cancel-button', hidden: true }, 'Cancel export');
  const cancelError = el('p', { class: 'error', id: 'cancel-error', role: 'alert' });
  const history = el('ol', { class: 'timeline', id: 'history' });
  show(
    view,
    heading(`Export ${id}`),
    status, progress, reason, result,
    el('div', { class: 'actions' }, cancel), cancelError,
    el('h2', {}, 'Details'), facts,
    el('h2', {}, 'History'), history,
  );
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    cancelError.textContent = '';
    try {
      const reply = await api('DELETE', `/exports/${encodeURIComponent(id)}`);
      if (!reply.ok) cancelError.textContent = errorText(reply);
      // The button goes once the export has ended; focus stays on the page, at its status.
      status.focus();
      await refresh();
    } catch (e) {
      cancelError.textContent = e.message;
    } finally {
      cancel.disabled = false;
    }
  });

  let latest = 0; // the newest refresh: an older one's answer is not shown
  let drawn = ''; // what is on screen, so that an unchanged answer redraws nothing
  let after = 0; // polls since the export ended: its last events (the email) come after

  async function refresh() {
    // One timer at a time, whether this call came from it or from a cancel.
    clearTimeout(state.poll);
    const mine = ++latest;
    // The job first, then its history: the history is then at least as new as the job.
    const job = await api('GET', `/exports/${encodeURIComponent(id)}`);
    const events = job.ok ? await api('GET', `/exports/${encodeURIComponent(id)}/events`) : null;
    if (view !== state.view || mine !== latest) return;
    if (!job.ok) {
      status.textContent = '';
      reason.textContent = errorText(job);
      return;
    }
    const shown = JSON.stringify([job.json.status, job.json.updated_at, job.json.queue_position, job.json.download_url, events.json]);
    if (shown !== drawn) {
      drawn = shown;
      render(job.json, events.ok ? events.json.events : []);
    }
    // An ended export's history still gains its notice; it is read a few more times.
    if (TERMINAL.has(job.json.status)) after += 1;
    if (after <= SETTLE_POLLS) state.poll = setTimeout(poll, POLL_MS);
  }

  function poll() {
    refresh().catch((e) => {
      reason.textContent = `The export could not be read: ${e.message}`;
    });
  }

  function render(job, events) {
    status.className = `status status-${job.status}`;
    status.textContent = job.status;
    const reached = STEPS.indexOf(job.status);
    const ended = job.status === 'FAILED' || job.status === 'CANCELLED';
    const last = ended ? lastStepBefore(events) : reached;
    progress.replaceChildren(
      ...STEPS.map((step, i) => {
        let cls = 'pending';
        if (job.status === 'SUCCEEDED') cls = i === STEPS.length - 1 ? 'done last' : 'done';
        else if (!ended && i < reached) cls = 'done';
        else if (!ended && i === reached) cls = 'current';
        else if (ended && i <= last) cls = 'done';
        return el('li', { class: cls, 'aria-current': cls === 'current' ? 'step' : undefined }, step);
      }),
      ...(ended ? [el('li', { class: 'ended-badly', 'aria-current': 'step' }, job.status)] : []),
    );
    reason.textContent = job.error ? `Why: ${job.error}` : '';
    cancel.hidden = TERMINAL.has(job.status);
    facts.replaceChildren(...[
      ['Dataset', el('a', { href: `#/datasets/${encodeURIComponent(job.dataset)}` }, job.dataset)],
      ['Parameters', el('code', {}, JSON.stringify(job.params || {}))],
      ['Format', [job.format, job.compression !== 'none' ? ` + ${job.compression}` : '', ` · archive ${job.archive}`].join('')],
      ['Submitted', timeEl(job.created_at)],
      ['Updated', timeEl(job.updated_at)],
      ['Elapsed', job.timings ? duration(job.timings.elapsed_ms) : ''],
      ['Rows', count(job.rows)],
      ['Size', bytes(job.bytes)],
      ['Statement', job.statement_id ? el('code', {}, job.statement_id) : ''],
      // Only while it waits for a warehouse slot.
      ...(job.queue_position != null
        ? [['In line', el('span', { id: 'queue-position' }, job.queue_position === 0 ? 'next for a warehouse slot' : `${job.queue_position} ahead for a warehouse slot`)]]
        : []),
    ].flatMap(([term, value]) => [el('dt', {}, term), el('dd', {}, value)]));
    renderResult(job);
    history.replaceChildren(...events.map((e) => el('li', {},
      timeEl(e.at),
      el('span', { class: 'step' }, e.step),
      e.outcome ? ` ${e.outcome}` : '',
      e.message ? ` – ${e.message}` : '')));
  }

  function renderResult(job) {
    if (job.status !== 'SUCCEEDED') {
      result.replaceChildren();
      return;
    }
    if (job.expired) {
      result.replaceChildren(el('p', { class: 'meta', id: 'expired' },
        'This export\'s files have expired and were removed; submit it again for a new copy.'));
      return;
    }
    if (job.download_url) {
      // The link names the file itself (`<dataset>-<request id>.zip`).
      result.replaceChildren(el('p', { class: 'actions' },
        el('a', { class: 'button', id: 'download-link', href: job.download_url, download: true }, 'Download the archive'),
        el('span', { class: 'meta' }, `${bytes(job.bytes)}; this link works until ${localTime(job.download_expires_at)}`)));
      return;
    }
    const parts = job.parts || [];
    result.replaceChildren(
      el('h2', {}, `Parts (${count(job.total_parts ?? parts.length)})`),
      el('table', { id: 'parts' },
        el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'Part'), el('th', { scope: 'col' }, 'Rows'), el('th', { scope: 'col' }, 'Size'))),
        el('tbody', {}, parts.map((p) => el('tr', {},
          el('td', {}, el('a', { href: p.url, download: p.name }, p.name)),
          el('td', { class: 'number' }, count(p.rows)),
          el('td', { class: 'number' }, bytes(p.size)))))),
      parts.length < (job.total_parts ?? 0) ? el('p', { class: 'meta' }, `The first ${parts.length} parts; the CLI's download command fetches them all.`) : null,
    );
  }

  await refresh();
}

/** For a job that failed or was cancelled: the last of the usual steps it had reached. */
function lastStepBefore(events) {
  let last = 0;
  for (const e of events) {
    if (e.step === 'started') last = Math.max(last, 1);
    if (e.step === 'finished' || e.step === 'packaging') last = Math.max(last, 2);
  }
  return last;
}

// ---- my exports -----------------------------------------------------------------------------

/** The caller's quotas and today's use of each (`GET /quota`), as a short list. */
function quotaList(quota) {
  const use = (q, shown = (n) => String(n)) => (q.limit == null ? `${shown(q.used)} (no limit)` : `${shown(q.used)} of ${shown(q.limit)}`);
  const items = [
    ['Exports not yet ended', use(quota.unfinished_exports)],
    ['Exports today', use(quota.exports_per_day)],
    ['Exported today', use(quota.bytes_per_day, bytes)],
    ['Lookups', quota.lookups_per_second == null ? 'no limit' : `${quota.lookups_per_second} a second, ${quota.lookup_burst} at once`],
  ];
  return el('dl', { id: 'quota', class: 'facts' }, ...items.flatMap(([term, value]) => [el('dt', {}, term), el('dd', {}, value)]));
}

async function showExports(view, cursor) {
  const path = `/exports?limit=20${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
  const [reply, quota] = await Promise.all([api('GET', path), api('GET', '/quota')]);
  if (!reply.ok) {
    show(view, heading('My exports'), notice(errorText(reply)));
    return;
  }
  const { jobs, next_cursor: next } = reply.json;
  const older = el('button', { type: 'button', class: 'secondary', id: 'older', disabled: !next }, 'Older');
  const newer = el('button', { type: 'button', class: 'secondary', id: 'newer', disabled: state.cursors.length === 0 }, 'Newer');
  const page = (to) => {
    older.disabled = true;
    newer.disabled = true;
    showExports(++state.view, to).catch((e) => show(state.view, heading('My exports'), notice(e.message)));
  };
  older.addEventListener('click', () => {
    state.cursors.push(cursor || '');
    page(next);
  });
  newer.addEventListener('click', () => page(state.cursors.pop() || undefined));
  show(
    view,
    heading('My exports'),
    el('p', { class: 'lede' }, `The exports of ${state.identity}, newest first.`),
    ...(quota.ok ? [el('h2', {}, 'Quotas (today, UTC)'), quotaList(quota.json)] : []),
    jobs.length === 0
      ? el('p', { id: 'no-exports' }, 'No exports yet. ', el('a', { href: '#/' }, 'Choose a dataset'), ' to start one.')
      : el('div', { class: 'scroll' }, el('table', { id: 'exports' },
        el('thead', {}, el('tr', {}, ['Export', 'Dataset', 'Status', 'Submitted', 'Rows', 'Size'].map((t) => el('th', { scope: 'col' }, t)))),
        el('tbody', {}, jobs.map((job) => el('tr', { 'data-request-id': job.request_id },
          el('td', {}, el('a', { href: `#/exports/${encodeURIComponent(job.request_id)}`, class: 'mono' }, job.request_id)),
          el('td', {}, job.dataset),
          el('td', { class: `status status-${job.status}` }, job.status),
          el('td', {}, timeEl(job.created_at)),
          el('td', { class: 'number' }, count(job.rows)),
          el('td', { class: 'number' }, bytes(job.bytes))))))),
    el('div', { class: 'pager' }, newer, older),
  );
}

// ---- subscriptions --------------------------------------------------------------------------

function describeDeliveries(list) {
  return list.map((d) => Object.entries(d).map(([kind, to]) => `${kind} ${to}`).join('')).join(', ') || 'mail only';
}

/** A labelled text input of the subscription form. */
function textField(id, label, attrs = {}, help = '') {
  return el('p', { class: 'field' },
    el('label', { for: id }, label),
    el('input', { id, name: id, type: 'text', ...attrs }),
    help ? el('small', { id: `${id}-hint` }, help) : '',
    el('span', { id: `${id}-error`, class: 'error', role: 'alert' }));
}

/** The subscription form's body: its fields read as the API takes them. */
function subscriptionBody(form) {
  const value = (name) => form.elements[name].value.trim();
  let params = {};
  const text = value('sub-params');
  if (text) params = JSON.parse(text);
  const deliver = [];
  if (value('sub-webhook')) deliver.push({ webhook: value('sub-webhook') });
  if (value('sub-s3')) deliver.push({ s3: value('sub-s3') });
  if (value('sub-email')) deliver.push({ email: value('sub-email') });
  const body = { dataset: value('sub-dataset'), params, schedule: value('sub-schedule'), deliver };
  if (value('sub-timezone')) body.timezone = value('sub-timezone');
  if (form.elements['sub-now'].checked) body.start = 'now';
  return body;
}

async function showSubscriptions(view) {
  const [reply, datasets] = await Promise.all([api('GET', '/subscriptions'), catalogue()]);
  if (!reply.ok) {
    show(view, heading('Subscriptions'), notice(errorText(reply)));
    return;
  }
  const { subscriptions } = reply.json;
  const result = el('p', { id: 'subscribe-result', role: 'status' });
  const form = el('form', { id: 'subscribe-form', novalidate: true },
    el('p', { class: 'field' },
      el('label', { for: 'sub-dataset' }, 'Dataset'),
      el('select', { id: 'sub-dataset', name: 'sub-dataset' }, datasets.map((d) => el('option', { value: d.name }, d.name)))),
    el('p', { class: 'field' },
      el('label', { for: 'sub-params' }, 'Parameters (JSON)'),
      el('textarea', { id: 'sub-params', name: 'sub-params', rows: 2, spellcheck: 'false' }, '{"ship_from": "yesterday", "ship_to": "yesterday"}'),
      el('small', {}, 'A date may be relative to each run: today, yesterday, today-7d, yesterday-1m.'),
      el('span', { id: 'sub-params-error', class: 'error', role: 'alert' })),
    textField('sub-schedule', 'Schedule', { value: 'cron(0 6 * * ? *)' }, 'rate(1 day), rate(6 hours), or cron(minutes hours day-of-month month day-of-week year)'),
    textField('sub-timezone', 'Time zone', { placeholder: 'UTC' }),
    el('p', { class: 'field' },
      el('label', {}, el('input', { id: 'sub-now', name: 'sub-now', type: 'checkbox' }), ' First run now (a rate then runs every period from now)')),
    textField('sub-webhook', 'Webhook', { placeholder: 'https://…' }),
    textField('sub-s3', 'Copy into', { placeholder: 's3://bucket/prefix/' }),
    textField('sub-email', 'Email'),
    el('p', {}, el('button', { type: 'submit', id: 'subscribe-button' }, 'Subscribe')),
    result);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearErrors(form);
    let body;
    try {
      body = subscriptionBody(form);
    } catch (e) {
      document.getElementById('sub-params-error').textContent = `not JSON: ${e.message}`;
      return;
    }
    const created = await api('POST', '/subscriptions', { body });
    if (!created.ok) {
      result.textContent = errorText(created);
      return;
    }
    location.hash = `#/subscriptions/${encodeURIComponent(created.json.subscription_id)}`;
  });
  const test = el('form', { id: 'webhook-test-form' },
    textField('test-url', 'Receiver', { placeholder: 'https://…' }),
    el('p', {}, el('button', { type: 'submit', id: 'webhook-test-button', class: 'secondary' }, 'Send a test notice')),
    el('p', { id: 'webhook-test-result', role: 'status' }));
  test.addEventListener('submit', async (event) => {
    event.preventDefault();
    const out = document.getElementById('webhook-test-result');
    out.textContent = 'Sending…';
    const reply = await api('POST', '/webhook-test', { body: { url: test.elements['test-url'].value.trim() } });
    const r = reply.json;
    if (!reply.ok) out.textContent = errorText(reply);
    else if (r.status == null) out.textContent = `${r.url} did not answer: ${r.error}`;
    else out.textContent = `${r.url} answered ${r.status}${r.delivered ? '' : ' (not taken)'}`;
  });
  show(
    view,
    heading('Subscriptions'),
    el('p', { class: 'lede' }, `Exports ${state.identity} receives on a schedule; each run is an export of its own.`),
    subscriptions.length === 0
      ? el('p', { id: 'no-subscriptions' }, 'No subscriptions yet.')
      : el('div', { class: 'scroll' }, el('table', { id: 'subscriptions' },
        el('thead', {}, el('tr', {}, ['Subscription', 'Dataset', 'Schedule', 'Next run', 'Runs', 'Deliveries', 'State'].map((t) => el('th', { scope: 'col' }, t)))),
        el('tbody', {}, subscriptions.map((s) => el('tr', { 'data-subscription-id': s.subscription_id },
          el('td', {}, el('a', { href: `#/subscriptions/${encodeURIComponent(s.subscription_id)}`, class: 'mono' }, s.subscription_id)),
          el('td', {}, s.dataset),
          el('td', {}, `${s.schedule} (${s.timezone})`),
          el('td', {}, s.next_run_at == null ? '—' : timeEl(s.next_run_at)),
          el('td', { class: 'number' }, count(s.runs)),
          el('td', {}, describeDeliveries(s.deliver)),
          el('td', { class: 'state' }, s.paused ? 'paused' : 'active')))))),
    el('h2', {}, 'New subscription'),
    form,
    el('h2', {}, 'Try your webhook'),
    el('p', {}, 'A test notice, signed with your webhook secret as every notice is.'),
    test,
  );
}

async function showSubscription(view, id) {
  const path = `/subscriptions/${encodeURIComponent(id)}`;
  const [reply, runs] = await Promise.all([api('GET', path), api('GET', `${path}/runs`)]);
  if (!reply.ok) {
    show(view, heading('Subscription'), notice(errorText(reply)));
    return;
  }
  const s = reply.json;
  const toggle = el('button', { type: 'button', id: 'pause-button', class: 'secondary' }, s.paused ? 'Resume' : 'Pause');
  toggle.addEventListener('click', async () => {
    toggle.disabled = true;
    const changed = await api('POST', `${path}/${s.paused ? 'resume' : 'pause'}`);
    if (!changed.ok) {
      show(view, heading('Subscription'), notice(errorText(changed)));
      return;
    }
    route();
  });
  const rows = runs.ok ? runs.json.runs : [];
  show(
    view,
    heading(`Subscription ${s.dataset}`),
    el('dl', { class: 'facts', id: 'subscription' },
      el('dt', {}, 'Schedule'), el('dd', {}, `${s.schedule} (${s.timezone})`),
      el('dt', {}, 'State'), el('dd', { id: 'subscription-state' }, s.paused ? 'paused' : 'active'),
      el('dt', {}, 'Next run'), el('dd', {}, s.next_run_at == null ? '—' : timeEl(s.next_run_at)),
      el('dt', {}, 'Parameters'), el('dd', { class: 'mono' }, JSON.stringify(s.params)),
      el('dt', {}, 'Deliveries'), el('dd', {}, describeDeliveries(s.deliver))),
    el('p', {}, toggle),
    el('h2', {}, 'Runs'),
    rows.length === 0
      ? el('p', { id: 'no-runs' }, 'No runs yet.')
      : el('div', { class: 'scroll' }, el('table', { id: 'runs' },
        el('thead', {}, el('tr', {}, ['Due', 'Export', 'Status'].map((t) => el('th', { scope: 'col' }, t)))),
        el('tbody', {}, rows.map((run) => el('tr', {},
          el('td', {}, timeEl(run.scheduled_at)),
          el('td', {}, run.request_id ? el('a', { href: `#/exports/${encodeURIComponent(run.request_id)}`, class: 'mono' }, run.request_id) : '—'),
          el('td', { class: `status status-${run.status || 'FAILED'}` }, run.status || `refused: ${run.error || ''}`)))))),
  );
}

// ---- navigation ---------------------------------------------------------------------------

async function route() {
  // Only `#/…` names a view; `#main` (the skip link) just moves focus.
  if (location.hash && !location.hash.startsWith('#/')) return;
  clearTimeout(state.poll);
  const view = ++state.view;
  const [path] = location.hash.replace(/^#/, '').split('?');
  let parts;
  try {
    parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  } catch {
    parts = [];
  }
  const section = ['exports', 'subscriptions'].includes(parts[0]) ? parts[0] : 'datasets';
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === section) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  try {
    if (parts[0] === 'subscriptions' && parts[1]) await showSubscription(view, parts[1]);
    else if (parts[0] === 'subscriptions') await showSubscriptions(view);
    else if (parts[0] === 'datasets' && parts[1]) await showDataset(view, parts[1]);
    else if (parts[0] === 'exports' && parts[1]) await showExport(view, parts[1]);
    else if (parts[0] === 'exports') {
      state.cursors = [];
      await showExports(view);
    } else await showCatalogue(view);
  } catch (e) {
    show(view, heading('Something went wrong'), notice(e.message));
  }
}

function remembered() {
  try {
    return sessionStorage.getItem('identity');
  } catch {
    return null;
  }
}

/** The token from the address the console printed, kept for this tab and taken out of the
 * address bar (so it is not bookmarked or shared by accident). */
function takeToken() {
  const params = new URLSearchParams(location.search);
  const token = params.get('token');
  if (token) {
    try {
      sessionStorage.setItem('token', token);
    } catch {
      // Without storage the token lasts as long as the page.
    }
    history.replaceState(null, '', location.pathname + location.hash);
    return token;
  }
  try {
    return sessionStorage.getItem('token');
  } catch {
    return null;
  }
}

async function start() {
  state.token = takeToken();
  const reply = await fetch('/console/identities', { headers: consoleHeaders() }).then((r) => r.json()).catch(() => null);
  const select = document.getElementById('identity');
  if (!reply || !reply.identities) {
    const why = reply && reply.error ? reply.error.message : 'The console did not say which identities it signs for.';
    show(state.view, heading('The console cannot start'), notice(why));
    return;
  }
  const saved = remembered();
  state.identity = reply.identities.includes(saved) ? saved : reply.identities[0];
  select.replaceChildren(...reply.identities.map((name) => el('option', { value: name, selected: name === state.identity }, name)));
  document.getElementById('endpoint').textContent = reply.endpoint;
  select.addEventListener('change', () => {
    state.identity = select.value;
    try {
      sessionStorage.setItem('identity', state.identity);
    } catch {
      // Storage may be off; the choice then lasts until the page is reloaded.
    }
    route();
  });
  window.addEventListener('hashchange', route);
  await route();
}

start();
