// Warden dashboard: fetches each page's numbers as JSON and writes them as text
// (textContent, never markup), so a model, user or agent name is only ever shown.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);

  function status(msg) {
    const el = $('status');
    if (el) el.textContent = msg;
  }

  async function load(what) {
    const r = await fetch('/dashboard/api/' + what, {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' },
    });
    if (r.status === 401) {
      window.location.assign('/dashboard/sign-in');
      return null;
    }
    if (!r.ok) throw new Error('the server answered ' + r.status);
    return r.json();
  }

  // Fills table `id` with a header row and data rows; `cls(row)` may name a row class.
  function table(id, head, rows, cls) {
    const t = $(id);
    if (!t) return;
    t.replaceChildren();
    const thead = t.createTHead().insertRow();
    for (const h of head) {
      const th = document.createElement('th');
      th.scope = 'col';
      th.textContent = h;
      thead.appendChild(th);
    }
    const body = t.createTBody();
    for (const r of rows) {
      const tr = body.insertRow();
      if (cls) {
        const c = cls(r);
        if (c) tr.className = c;
      }
      for (const v of r.cells) {
        const td = tr.insertCell();
        td.textContent = v === null || v === undefined ? '' : String(v);
      }
    }
  }

  function dl(id, pairs) {
    const el = $(id);
    if (!el) return;
    el.replaceChildren();
    for (const [k, v] of pairs) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      el.append(dt, dd);
    }
  }

  window.wardenCharts = {};

  function chartHours(hours) {
    const el = $('chart-hours');
    if (!el || typeof uPlot === 'undefined') return;
    el.replaceChildren();
    const data = [
      hours.map((h) => h.t),
      hours.map((h) => h.granted),
      hours.map((h) => h.denied),
    ];
    const opts = {
      width: Math.max(320, el.clientWidth || 800),
      height: 260,
      scales: { x: { time: true } },
      // The axis in UTC, as the headings say, whatever the browser's zone.
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
      series: [
        {},
        { label: 'Granted', stroke: '#1a7f37', width: 2 },
        { label: 'Denied', stroke: '#c62828', width: 2 },
      ],
    };
    window.wardenCharts.hours = new uPlot(opts, data, el);
  }

  // The latest scheduled verification: green when clean, red naming the indexes of
  // what it found, plain when its details are sealed to an auditor key.
  function verification(v) {
    const el = $('verification');
    if (!el) return;
    el.className = '';
    if (!v) {
      el.textContent = 'No scheduled verification has run yet ([schedule] verify_every_secs).';
      return;
    }
    const d = v.details;
    if (!d) {
      el.textContent = 'Last run ' + v.time + ' (entry ' + v.index + '); its result is sealed to the auditors.';
      return;
    }
    const what = 'Last run ' + v.time + ': ' + d.entries + ' entries checked, signed size ' + d.verified_size;
    if (d.clean) {
      el.className = 'ok';
      el.textContent = what + ', no findings.';
    } else {
      el.className = 'bad';
      const at = (d.first_findings || []).map((f) => 'index ' + String(f).replace(':', ' (') + ')');
      el.textContent = what + ', ' + d.findings + ' finding(s): ' + at.join(', ') + '.';
    }
  }

  function overview(d) {
    verification(d.verification);
    table(
      'table-sinks',
      ['Sink', 'Format', 'Next entry', 'Entries behind'],
      d.sinks.length
        ? d.sinks.map((x) => ({ cells: [x.sink, x.format, x.next, x.behind] }))
        : [{ cells: ['no sink has exported yet', '', '', ''] }],
    );
    const cp = d.ledger.checkpoint;
    dl('ledger', [
      ['Entries', String(d.ledger.size)],
      ['Removed by retention', String(d.ledger.removed_by_retention)],
      ['Latest signed checkpoint', cp ? 'size ' + cp.size + ', epoch ' + cp.epoch : 'none yet'],
      ['Model accesses granted', String(d.totals.granted)],
      ['Model accesses denied', String(d.totals.denied)],
      ['Refused authentications', String(d.totals.auth_failures)],
      ['Incidents', String(d.totals.incidents)],
    ]);
    chartHours(d.hours);
    table(
      'table-hours',
      ['Hour (UTC)', 'Granted', 'Denied', 'Refused authentications'],
      d.hours.map((h) => ({ cells: [h.hour, h.granted, h.denied, h.auth_failures] })),
    );
    table(
      'table-days',
      ['Day (UTC)', 'Granted', 'Denied', 'Refused authentications', 'Incidents'],
      d.days.map((x) => ({ cells: [x.day, x.granted, x.denied, x.auth_failures, x.incidents] })),
    );
    const sev = Object.entries(d.incidents.open);
    table(
      'table-incidents',
      ['Severity', 'Open'],
      sev.length ? sev.map(([k, v]) => ({ cells: [k, v] })) : [{ cells: ['none', 0] }],
    );
    table(
      'table-epochs',
      ['Epoch', 'First entry', 'Last entry', 'Span (s)', 'Entries', 'Within 2 h'],
      d.epochs.map((e) => ({
        over: e.over,
        cells: [e.epoch, e.start, e.end, e.seconds, e.entries, e.over ? 'NO: over 2 h' : 'yes'],
      })),
      (r) => (r.over ? 'flagged' : ''),
    );
    const notes = [];
    if (d.counting && d.counting.behind > 0) {
      notes.push('Still counting the ledger (' + d.counting.counted + ' entries so far, ' + d.counting.behind +
        ' to go): the figures are partial.');
    }
    if (!d.decrypted) {
      notes.push('The server holds no auditor key: incidents are counted without their severity, and only public fields are shown.');
    }
    status(notes.join(' '));
  }

  // The incidents page: the list (filtered here), one incident's detail, and its
  // acknowledgement (a POST carrying the session's CSRF token in a header).
  let incidents = [];
  let shown = null;

  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : '';
  }

  function listIncidents() {
    const rows = incidents;
    table(
      'table-incident-list',
      ['Entry', 'Time', 'Severity', 'Detector', 'Principal', 'Address', 'Summary', 'State'],
      rows.map((i) => ({
        index: i.index,
        cells: [i.index, i.time, i.severity, i.detector, i.principal, i.ip, i.summary,
          i.acknowledged ? 'acknowledged' : 'open'],
      })),
    );
    const body = $('table-incident-list').tBodies[0];
    Array.from(body.rows).forEach((tr, n) => {
      tr.tabIndex = 0;
      tr.className = 'pick';
      const open = () => detail(rows[n]);
      tr.addEventListener('click', open);
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          open();
        }
      });
    });
  }

  function detail(i) {
    shown = i;
    $('detail').hidden = false;
    const a = i.acknowledged;
    const ev = i.event || {};
    dl('detail-fields', [
      ['Entry', String(i.index)],
      ['Time', i.time],
      ['Severity', i.severity],
      ['Detector', i.detector],
      ['Summary', i.summary],
      ['Principal', i.principal || ''],
      ['Address', i.ip || ''],
      ['User agent', ev.user_agent || ''],
      ['Model', ev.model || ''],
      ['Evidence (entries)', (i.evidence || []).join(', ')],
      ['Response actions', (i.playbook || []).join(', ')],
      ['Acknowledged', a ? a.time + ' by ' + (a.by || '?') + ': ' + (a.note || '') : 'no'],
    ]);
    $('ack').hidden = Boolean(a);
    $('h-detail').focus();
  }

  // The filters are applied by the server, which answers the newest matches.
  async function loadIncidents() {
    const q = new URLSearchParams({
      severity: $('f-severity').value,
      state: $('f-state').value || 'any',
      text: $('f-text').value.slice(0, 256),
    });
    const d = await load('incidents?' + q.toString());
    if (!d) return;
    incidents = d.incidents;
    listIncidents();
    if (shown) {
      const again = incidents.find((i) => i.index === shown.index);
      if (again) detail(again);
    }
    const notes = [];
    if (d.matching > d.incidents.length) {
      notes.push('Showing the newest ' + d.incidents.length + ' of ' + d.matching + ' matching incidents.');
    }
    if (!d.decrypted) notes.push('The server holds no auditor key: incidents show only when they were raised.');
    status(notes.join(' '));
  }

  let refilter = null;

  function incidentsPage() {
    for (const id of ['f-severity', 'f-state', 'f-text']) {
      $(id).addEventListener('input', () => {
        clearTimeout(refilter);
        refilter = setTimeout(() => loadIncidents().catch((e) => status('Could not load: ' + e.message)), 250);
      });
    }
    $('filter').addEventListener('submit', (e) => e.preventDefault());
    $('h-detail').tabIndex = -1;
    $('ack').addEventListener('submit', async (e) => {
      e.preventDefault();
      if (!shown) return;
      const r = await fetch('/dashboard/api/incidents/' + shown.index + '/ack', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
        body: JSON.stringify({ note: $('ack-note').value }),
      });
      if (!r.ok) {
        status('The acknowledgement was refused (' + r.status + ').');
        return;
      }
      const body = await r.json();
      // Shown at once; the list (filtered by the server) may no longer hold it.
      shown.acknowledged = { time: new Date().toISOString(), by: 'you (entry ' + body.entry + ')',
        note: $('ack-note').value };
      detail(shown);
      const index = shown.index;
      await loadIncidents();
      status('Incident ' + index + ' acknowledged.');
    });
    return loadIncidents();
  }

  // The reports archive: one row per report, a download link and the server's
  // signature verdict per format, and "generate now".
  function link(href, text, label) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = text;
    if (label) a.setAttribute('aria-label', label);
    a.setAttribute('download', '');
    return a;
  }

  function reportFiles(td, r) {
    const ul = document.createElement('ul');
    ul.className = 'files';
    for (const f of r.files) {
      const li = document.createElement('li');
      li.dataset.file = f.file;
      li.dataset.signature = f.signature;
      const url = '/dashboard/reports/file/' + encodeURIComponent(f.file);
      li.append(link(url, f.format.toUpperCase(), 'Download ' + f.file));
      const v = document.createElement('span');
      v.className = 'sig ' + (f.signature === 'valid' ? 'ok' : 'bad');
      v.textContent = f.signature === 'valid'
        ? 'signature valid'
        : 'signature ' + f.signature + (f.problem ? ': ' + f.problem : '');
      li.append(' ', v);
      if (f.sig_file) {
        li.append(' ', link('/dashboard/reports/file/' + encodeURIComponent(f.sig_file), '.sig',
          'Download ' + f.sig_file));
      }
      ul.append(li);
    }
    td.append(ul);
  }

  async function loadReports() {
    const d = await load('reports');
    if (!d) return;
    const head = ['Report', 'Period (UTC)', 'Generated', 'Entries', 'Granted', 'Denied', 'Incidents',
      'Invalid entries', 'Files and signatures'];
    table('table-reports', head, d.reports.map((r) => {
      const s = r.summary || {};
      return {
        cells: [r.name, s.from ? s.from + ' to ' + s.to : '', s.generated, s.entries, s.granted, s.denied,
          s.incidents, s.invalid, ''],
      };
    }), null);
    const body = $('table-reports').tBodies[0];
    Array.from(body.rows).forEach((tr, n) => {
      const r = d.reports[n];
      tr.dataset.report = r.name;
      if (r.files.some((f) => f.signature !== 'valid')) tr.className = 'flagged';
      reportFiles(tr.cells[tr.cells.length - 1], r);
    });
    if (!d.reports.length) {
      table('table-reports', head, [{ cells: ['No report yet.', '', '', '', '', '', '', '', ''] }]);
    }
    $('generate').hidden = !d.generate;
    $('generate-hint').textContent = d.generate
      ? 'Covers the scheduled period ending now, in the scheduled formats, signed by the root key.'
      : 'This server cannot sign a new report.';
  }

  function reportsPage() {
    $('generate').addEventListener('submit', async (e) => {
      e.preventDefault();
      const button = $('generate').querySelector('button');
      button.disabled = true;
      status('Generating a report…');
      try {
        const r = await fetch('/dashboard/api/reports/generate', {
          method: 'POST',
          credentials: 'same-origin',
          headers: { 'X-CSRF-Token': csrf() },
        });
        const body = await r.json().catch(() => ({}));
        if (!r.ok) {
          status('No report was generated: ' + ((body.error && body.error.message) || r.status) + '.');
          return;
        }
        await loadReports();
        status('Report generated: ' + body.files.join(', ') + '.');
      } finally {
        button.disabled = false;
      }
    });
    return loadReports();
  }

  // While the server is still counting the ledger after a start, figures are partial.
  function partial(behind) {
    return behind > 0 ? 'Still counting the ledger (' + behind + ' entries to go): figures are partial.' : '';
  }

  // The models page: the inventory (revoked versions flagged) and who accessed each
  // version in the window.
  async function modelsPage() {
    const d = await load('models');
    if (!d) return;
    const short = (h) => (h ? h.slice(0, 16) + '…' : '');
    const who = (v) => v.accessed_by
      .map((a) => a.user + ' (' + a.granted + ' granted' + (a.denied ? ', ' + a.denied + ' denied' : '') + ')')
      .join('; ');
    table(
      'table-models',
      ['Model', 'Version (aliases)', 'Stage', 'Root digest', 'Signer', 'Validated / approved by', 'Provenance',
        'Accessed by (last ' + d.window_days + ' days)'],
      d.versions.map((v) => ({
        revoked: v.revoked,
        cells: [v.model, v.version + (v.aliases.length ? ' (' + v.aliases.join(', ') + ')' : ''),
          v.revoked && v.stage !== 'revoked' ? v.stage + ' (revoked)' : v.stage, short(v.root_digest), v.signer,
          (v.validated_by || '–') + ' / ' + (v.approved_by || '–'),
          v.provenance ? JSON.stringify(v.provenance) : '', d.decrypted ? who(v) : 'sealed (no auditor key)'],
      })),
      (r) => (r.revoked ? 'flagged' : ''),
    );
    Array.from($('table-models').tBodies[0].rows).forEach((tr, n) => {
      const v = d.versions[n];
      tr.dataset.version = v.model + '@' + v.version;
      // The full root digest and each file's, on hover and to assistive technology.
      tr.cells[3].title = v.root_digest + '\n' + v.files.map((f) => f.name + ' sha256:' + f.digest).join('\n');
    });
    const revoked = d.versions.filter((v) => v.revoked);
    table(
      'table-revoked',
      ['Model', 'Version', 'Reason'],
      revoked.length
        ? revoked.map((v) => ({ cells: [v.model, v.version, v.revoked_reason] }))
        : [{ cells: ['none', '', ''] }],
    );
    status([
      partial(d.behind),
      d.decrypted ? '' : 'The server holds no auditor key: who accessed each version is sealed in the ledger.',
    ].join(' ').trim());
  }

  // The access review: one row per principal, grant and token; findings flagged.
  const minute = (t) => (t ? t.slice(0, 16).replace('T', ' ') + 'Z' : '');

  async function loadReview() {
    const d = await load('access-review');
    if (!d) return;
    const rows = [];
    for (const p of d.principals) {
      rows.push({
        flag: p.flag, kind: 'principal', principal: p.principal,
        cells: [p.principal, p.service ? 'service' : 'person', p.roles.join(', '), '', '', '',
          p.last_use || 'never', p.active ? (p.flag || '') : 'suspended'],
      });
      for (const g of p.grants) {
        const flag = g.expired ? 'expired' : g.flag === 'broader' ? 'broader than used: used on ' +
          Array.from(g.used_on || []).join(', ') : (g.flag || '');
        rows.push({
          flag: g.flag, kind: 'grant', principal: p.principal,
          cells: [p.principal, 'grant', g.action + ' on ' + g.model, '', minute(g.expires_at), g.created_by,
            g.last_used || 'never', flag],
        });
      }
      for (const t of p.tokens) {
        const flag = t.revoked ? 'revoked' : t.expired ? 'expired' : t.flag === 'broader'
          ? 'broader than used: ' + t.unused_scopes.join(', ') + ' unused' : (t.flag || '');
        rows.push({
          flag: t.revoked || t.expired ? null : t.flag, kind: 'token', principal: p.principal,
          cells: [p.principal, 'token ' + t.id, '', t.scopes.join(' '), minute(t.expires_at), minute(t.created_at),
            t.last_used || 'never', flag],
        });
      }
    }
    table(
      'table-review',
      ['Principal', 'What', 'Roles or grant', 'Token scopes', 'Expires', 'Granted by or created', 'Last use',
        'Finding'],
      rows,
      (r) => (r.flag ? 'flagged' : ''),
    );
    Array.from($('table-review').tBodies[0].rows).forEach((tr, n) => {
      tr.dataset.kind = rows[n].kind;
      tr.dataset.principal = rows[n].principal;
      tr.dataset.flag = rows[n].flag || '';
    });
    status([
      partial(d.behind),
      d.uses_not_counted ? d.uses_not_counted + ' uses were past what the server tracks: something may have been used more recently than shown.' : '',
      d.decrypted ? '' : 'The server holds no auditor key: uses are known from tokens\' last use only.',
    ].join(' ').trim());
  }

  function reviewPage() {
    $('signoff').addEventListener('submit', async (e) => {
      e.preventDefault();
      const r = await fetch('/dashboard/api/access-review/sign-off', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrf() },
        body: JSON.stringify({ note: $('signoff-note').value }),
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        $('signoff-result').textContent = 'The sign-off was refused: ' +
          ((body.error && body.error.message) || r.status) + '.';
        return;
      }
      $('signoff-result').textContent = 'Signed off: ledger entry ' + body.entry + ', export SHA-256 ' +
        body.csv_sha256 + '.';
    });
    return loadReview();
  }

  // New numbers pushed by the server whenever the ledger grows.
  function follow(what, render) {
    if (typeof EventSource === 'undefined') return;
    const es = new EventSource('/dashboard/api/live');
    es.addEventListener(what, (e) => {
      render(JSON.parse(e.data));
      document.body.dataset.updated = String(Date.now());
    });
  }

  async function start() {
    try {
      if ($('chart-hours')) {
        const d = await load('overview');
        if (d) overview(d);
        follow('overview', overview);
      } else if ($('table-incident-list')) {
        await incidentsPage();
      } else if ($('table-reports')) {
        await reportsPage();
      } else if ($('table-models')) {
        await modelsPage();
      } else if ($('table-review')) {
        await reviewPage();
      }
      document.body.dataset.loaded = 'true';
    } catch (e) {
      status('Could not load the data: ' + e.message);
      document.body.dataset.loaded = 'error';
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', start);
  } else {
    start();
  }
})();
