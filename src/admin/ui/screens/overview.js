// Overview: backlog, oldest pending age, rates over the last 15 minutes, dead count, destinations, relays, health.
import { api } from '../api.js';
import { fmtAge, fmtNum, fmtTime, h, heading, stat, table } from '../dom.js';

const REFRESH_MS = 5000;

export async function renderOverview(root, ctx) {
  const updated = h('span', { class: 'muted small', id: 'updated' });
  const tiles = h('div', { class: 'stats' });
  const chartBox = h('div', { class: 'chart', id: 'rates-chart' });
  const chartSummary = h('p', { class: 'muted small', id: 'rates-summary' });
  const destinations = h('div');
  root.replaceChildren(
    heading('Overview', updated),
    tiles,
    h(
      'section',
      { 'aria-labelledby': 'rates-title' },
      h('h2', { id: 'rates-title' }, 'Rates, last 15 minutes (per minute)'),
      chartBox,
      chartSummary,
    ),
    h('section', { 'aria-labelledby': 'dest-title' }, h('h2', { id: 'dest-title' }, 'Destinations'), destinations),
  );

  let chart;
  let timer;
  let stopped = false;
  const resize = new ResizeObserver(() => chart?.setSize(chartSize(chartBox)));
  resize.observe(chartBox);

  const refresh = async () => {
    if (stopped) return;
    try {
      const o = await api('GET', '/overview');
      if (stopped || !ctx.current()) return;
      ctx.setReadOnly(o.read_only === true);
      drawTiles(tiles, o);
      chart = drawChart(chartBox, chart, o.rates);
      chartSummary.textContent = summary(o.rates);
      // Retries and deaths are counted by this relay process only: say so rather than let the chart look global.
      if (o.rates?.source) chartSummary.append(h('br'), `Sources: ${sources(o.rates.source)}.`);
      destinations.replaceChildren(drawDestinations(o.destinations ?? []));
      updated.textContent = `Updated ${fmtTime(new Date().toISOString()).slice(11)} · refreshes every 5 s`;
    } catch (err) {
      if (!stopped) ctx.fail(err);
    } finally {
      // Not while the tab is hidden: a forgotten tab should not query Postgres every 5 s for nobody.
      if (!stopped) timer = setTimeout(tick, REFRESH_MS);
    }
  };
  const tick = () => {
    if (document.hidden) timer = setTimeout(tick, REFRESH_MS);
    else refresh();
  };
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
    resize.disconnect();
    chart?.destroy();
  };
}

function drawTiles(tiles, o) {
  const b = o.backlog ?? {};
  const pg = o.health?.postgres;
  const redis = o.health?.redis;
  const health = (x) =>
    x ? (x.used === false ? 'not used' : x.ok ? `ok · ${fmtNum(Math.round(x.latency_ms))} ms` : 'down') : '—';
  tiles.replaceChildren(
    stat('Pending backlog', fmtNum(b.pending), {
      id: 'pending',
      hint: `${fmtNum(b.due)} due · ${fmtNum(b.retrying)} retrying`,
    }),
    stat('Oldest pending', fmtAge(b.oldest_pending_age_seconds), { id: 'oldest' }),
    h(
      'a',
      { href: '#/dead', class: 'stat-link' },
      stat('Failed (dead)', fmtNum(b.failed), { id: 'failed', tone: b.failed > 0 ? 'warn' : '' }),
    ),
    stat('Relays awake', fmtNum(o.relays?.awake), { id: 'relays', tone: o.relays?.awake === 0 ? 'warn' : '' }),
    stat('Postgres', health(pg), { id: 'postgres', tone: pg && !pg.ok ? 'bad' : 'good', hint: pg?.error }),
    stat('Redis', health(redis), { id: 'redis', tone: redis && !redis.ok ? 'bad' : 'good', hint: redis?.error }),
  );
}

const SERIES = [
  { key: 'published', label: 'published', stroke: '#2f6f9f' },
  { key: 'retried', label: 'retried', stroke: '#b7791f' },
  { key: 'failed', label: 'failed', stroke: '#c0392b' },
];

/** The box's content width: `clientWidth` includes its padding, and a chart that wide would stick out. */
function chartSize(box) {
  const style = getComputedStyle(box);
  const padding = Number.parseFloat(style.paddingLeft) + Number.parseFloat(style.paddingRight);
  return { width: Math.max(240, Math.floor(box.clientWidth - padding)), height: 220 };
}

function drawChart(box, chart, rates) {
  const points = rates?.points ?? [];
  const data = [points.map((p) => Date.parse(p.at) / 1000), ...SERIES.map((s) => points.map((p) => p[s.key] ?? 0))];
  if (chart) {
    chart.setData(data);
    return chart;
  }
  const UPlot = globalThis.uPlot;
  if (!UPlot) {
    box.replaceChildren(h('p', { class: 'muted' }, 'Chart library not loaded.'));
    return undefined;
  }
  box.replaceChildren();
  return new UPlot(
    {
      ...chartSize(box),
      scales: { y: { range: (_u, _min, max) => [0, Math.max(5, max)] } },
      axes: [{}, { label: 'events / min', size: 60 }],
      // Labels only: per-point values under the cursor would jump about on a chart that redraws every 5 s.
      legend: { live: false },
      series: [
        { label: 'time' },
        ...SERIES.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, points: { show: false } })),
      ],
    },
    data,
    box,
  );
}

function summary(rates) {
  const points = rates?.points ?? [];
  const sum = (k) => points.reduce((n, p) => n + (p[k] ?? 0), 0);
  return `In the last ${points.length} minutes: ${fmtNum(sum('published'))} published, ${fmtNum(sum('retried'))} retried, ${fmtNum(sum('failed'))} failed.`;
}

function sources(source) {
  return Object.entries(source)
    .map(([series, from]) => `${series}: ${from}`)
    .join('; ');
}

function drawDestinations(rows) {
  return table(
    'Events per destination queue',
    [
      {
        label: 'Queue',
        cell: (r) => h('a', { href: `#/events?queue=${encodeURIComponent(r.queue)}` }, r.queue),
      },
      { label: 'Pending', class: 'num', cell: (r) => fmtNum(r.pending) },
      {
        label: 'Failed',
        class: 'num',
        cell: (r) =>
          r.failed > 0
            ? h('a', { href: `#/events?status=failed&queue=${encodeURIComponent(r.queue)}` }, fmtNum(r.failed))
            : '0',
      },
      { label: 'Published (15 min)', class: 'num', cell: (r) => fmtNum(r.published_15m) },
    ],
    rows,
    { empty: 'No events in the outbox yet.' },
  );
}
