// The revcov coverage dashboard. It reads the report endpoints of the service that serves
// it with an API key kept in sessionStorage, and draws with SVG elements and text only:
// no inline styles or markup strings, so the page runs under a strict Content-Security-Policy.
"use strict";

(function () {
  const KEY_STORAGE = "revcov.apiKey";
  const SVG = "http://www.w3.org/2000/svg";
  const BUCKETS = [
    { name: "at_risk", label: "At risk" },
    { name: "passive", label: "Passive" },
    { name: "safe", label: "Safe" },
    { name: "unaccounted", label: "Unaccounted" },
  ];
  // As in app/widgets/formatting.py, so the widget and the dashboard read alike.
  const CURRENCY_SYMBOLS = { USD: "$", EUR: "€", GBP: "£", JPY: "¥" };
  const UNITS = [
    ["T", 12],
    ["B", 9],
    ["M", 6],
    ["K", 3],
  ];
  const ROLLING_WINDOWS = [30, 90, 180, 365];
  const QUARTERS_SHOWN = 8;
  const AT_RISK_ROWS = 10;
  const SURVEY_NEXT_ROWS = 100;

  const state = { key: null, tenant: null, generation: 0, trend: null, resizeTimer: null };

  // --- Formatting ----------------------------------------------------------------------

  // Split a decimal string into a BigInt of hundredths, so that rounding is exact.
  function hundredths(amount) {
    const [whole, fraction = ""] = String(amount).split(".");
    return BigInt(whole + (fraction + "00").slice(0, 2));
  }

  // Divide non-negative BigInts and round half away from zero.
  function divideRounded(numerator, denominator) {
    return (numerator * 2n + denominator) / (denominator * 2n);
  }

  function withCurrency(number, currency) {
    const symbol = CURRENCY_SYMBOLS[currency];
    return symbol === undefined ? currency + "\u00a0" + number : symbol + number;
  }

  function tenthsText(tenths) {
    const whole = tenths / 10n;
    const rest = tenths % 10n;
    return rest === 0n ? whole.toString() : whole.toString() + "." + rest.toString();
  }

  // $26.5B, $950: one decimal in K, M, B or T, whole below 1,000.
  function compactMoney(amount, currency) {
    const value = hundredths(amount);
    for (let index = 0; index < UNITS.length; index += 1) {
      let [suffix, exponent] = UNITS[index];
      let size = 10n ** BigInt(exponent + 2);
      if (value < size) continue;
      let tenths = divideRounded(value * 10n, size);
      if (tenths >= 10000n && index > 0) {
        [suffix, exponent] = UNITS[index - 1];
        size = 10n ** BigInt(exponent + 2);
        tenths = divideRounded(value * 10n, size);
      }
      return withCurrency(tenthsText(tenths) + suffix, currency);
    }
    const whole = divideRounded(value, 100n);
    return withCurrency(whole >= 1000n ? "1K" : whole.toString(), currency);
  }

  // $26,548,121,546.08: the exact amount with thousands separators.
  function exactMoney(amount, currency) {
    const [whole, fraction] = String(amount).split(".");
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    return withCurrency(fraction === undefined ? grouped : grouped + "." + fraction, currency);
  }

  // 81.4%: ratios arrive with 4 decimal places, so integer arithmetic rounds them exactly.
  // As on the server, a ratio below 1 never reads 100.0% and one above 0 never 0.0%.
  function percent(ratio) {
    if (ratio === null || ratio === undefined) return "n/a";
    const basisPoints = BigInt(Math.round(ratio * 10000));
    let tenths = divideRounded(basisPoints, 10n);
    if (tenths === 1000n && basisPoints < 10000n) tenths = 999n;
    if (tenths === 0n && basisPoints > 0n) tenths = 1n;
    return (tenths / 10n).toString() + "." + (tenths % 10n).toString() + "%";
  }

  function signed(value) {
    if (value === null || value === undefined) return "n/a";
    return (value > 0 ? "+" : "") + value.toFixed(1);
  }

  // --- DOM helpers ---------------------------------------------------------------------

  function byId(id) {
    return document.getElementById(id);
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svgElement(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clearChildren(node, keep) {
    for (const child of Array.from(node.childNodes)) {
      if (child !== keep) node.removeChild(child);
    }
  }

  function setText(id, text, value) {
    const node = byId(id);
    node.textContent = text;
    if (value !== undefined) node.setAttribute("data-value", String(value));
  }

  function setStatus(text) {
    byId("status").textContent = text;
  }

  // --- API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, parameters) {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(parameters || {})) {
      if (value !== null && value !== undefined && value !== "") query.set(name, value);
    }
    const url = query.toString() ? path + "?" + query.toString() : path;
    const response = await fetch(url, {
      headers: { Authorization: "Bearer " + state.key, Accept: "application/json" },
      cache: "no-store",
    });
    if (!response.ok) {
      let detail = response.status + " " + response.statusText;
      try {
        const problem = await response.json();
        if (problem.detail) detail = problem.detail;
      } catch (error) {
        // A body that is not a problem document keeps the status line as the message.
      }
      throw new ApiError(response.status, detail);
    }
    return response.json();
  }

  // --- Periods -------------------------------------------------------------------------

  // The year and month (1-12) of today in the tenant's time zone.
  function todayIn(timezone) {
    const parts = new Intl.DateTimeFormat("en-US", {
      timeZone: timezone,
      year: "numeric",
      month: "numeric",
    }).formatToParts(new Date());
    const part = (type) => Number(parts.find((item) => item.type === type).value);
    return { year: part("year"), month: part("month") };
  }

  function quarterLabel(ordinal, prefix) {
    return prefix + Math.floor(ordinal / 4) + "-Q" + ((ordinal % 4) + 1);
  }

  // Quarters counted from year 0: calendar ones, and fiscal ones named by the calendar
  // year in which the fiscal year ends, as the service names them.
  function currentQuarterOrdinal(today) {
    return today.year * 4 + Math.floor((today.month - 1) / 3);
  }

  function currentFiscalQuarterOrdinal(today, startMonth) {
    const offset = (today.month - startMonth + 12) % 12;
    const fiscalYear = startMonth === 1 || today.month < startMonth ? today.year : today.year + 1;
    return fiscalYear * 4 + Math.floor(offset / 3);
  }

  function fillPeriods(tenant) {
    const select = byId("period");
    clearChildren(select);
    const today = todayIn(tenant.timezone);
    const groups = [
      ["Calendar quarters", currentQuarterOrdinal(today), ""],
      [
        "Fiscal quarters",
        currentFiscalQuarterOrdinal(today, tenant.fiscal_year_start_month),
        "FY",
      ],
    ];
    for (const [label, current, prefix] of groups) {
      const group = element("optgroup", { label: label });
      for (let ordinal = current; ordinal > current - QUARTERS_SHOWN; ordinal -= 1) {
        const value = quarterLabel(ordinal, prefix);
        const suffix = ordinal === current ? " (current)" : "";
        group.appendChild(element("option", { value: value }, value + suffix));
      }
      select.appendChild(group);
    }
    const rolling = element("optgroup", { label: "Rolling windows" });
    for (const days of ROLLING_WINDOWS) {
      rolling.appendChild(element("option", { value: "last-" + days + "d" }, "Last " + days + " days"));
    }
    select.appendChild(rolling);
  }

  // The 8 quarters of the trend: up to the selected quarter, or up to the current
  // calendar quarter for a rolling window.
  function trendRange(period, tenant) {
    const match = /^(FY)?([0-9]{4})-Q([1-4])$/.exec(period);
    let last;
    let prefix = "";
    if (match) {
      prefix = match[1] || "";
      last = Number(match[2]) * 4 + Number(match[3]) - 1;
    } else {
      last = currentQuarterOrdinal(todayIn(tenant.timezone));
    }
    return {
      from: quarterLabel(last - QUARTERS_SHOWN + 1, prefix),
      to: quarterLabel(last, prefix),
    };
  }

  // --- URL state -----------------------------------------------------------------------

  function readHash() {
    const values = new URLSearchParams(window.location.hash.slice(1));
    return { period: values.get("period"), rollup: values.get("rollup"), by: values.get("by") };
  }

  function writeHash() {
    const values = new URLSearchParams({
      period: byId("period").value,
      rollup: byId("rollup").value,
      by: byId("segment-by").value,
    });
    history.replaceState(null, "", "#" + values.toString());
  }

  function selectIfPresent(select, value) {
    if (value && Array.from(select.options).some((option) => option.value === value)) {
      select.value = value;
    }
  }

  // --- Rendering: overview -------------------------------------------------------------

  function gaugePoint(fraction, radius) {
    const angle = Math.PI * (1 - fraction);
    return [110 + radius * Math.cos(angle), 110 - radius * Math.sin(angle)];
  }

  function renderGauge(report) {
    const coverage = Math.min(report.coverage || 0, 1);
    const arc = byId("gauge-arc");
    if (coverage > 0) {
      const [x, y] = gaugePoint(coverage, 90);
      arc.setAttribute("d", "M 20 110 A 90 90 0 0 1 " + x.toFixed(2) + " " + y.toFixed(2));
    } else {
      arc.removeAttribute("d");
    }
    arc.setAttribute("class", "gauge-arc " + (report.meets_target ? "met" : "not-met"));
    const [x1, y1] = gaugePoint(report.target, 74);
    const [x2, y2] = gaugePoint(report.target, 106);
    const target = byId("gauge-target");
    target.setAttribute("x1", x1.toFixed(2));
    target.setAttribute("y1", y1.toFixed(2));
    target.setAttribute("x2", x2.toFixed(2));
    target.setAttribute("y2", y2.toFixed(2));
    byId("coverage-value").textContent = percent(report.coverage);
    setText("coverage-text", percent(report.coverage), report.coverage);
    setText("target-text", percent(report.target), report.target);
    setText("target-verdict", report.meets_target ? "met" : "not met", report.meets_target);
  }

  function renderBar(report) {
    const bar = byId("revenue-bar");
    const title = byId("revenue-bar-label");
    clearChildren(bar, title);
    const total = hundredths(report.total_revenue);
    let x = 0;
    const parts = [];
    for (const bucket of BUCKETS) {
      const figures = report.buckets[bucket.name];
      const width = total === 0n ? 0 : Number((hundredths(figures.revenue) * 100000n) / total) / 100;
      bar.appendChild(
        svgElement("rect", {
          x: x.toFixed(2),
          y: "0",
          width: width.toFixed(2),
          height: "48",
          class: "bucket-" + bucket.name,
          "data-bucket": bucket.name,
        })
      );
      x += width;
      parts.push(bucket.label + " " + compactMoney(figures.revenue, report.currency) + " (" + percent(figures.share) + ")");
    }
    title.textContent = "Revenue by bucket: " + parts.join(", ") + ".";

    const legend = byId("legend");
    clearChildren(legend);
    for (const bucket of BUCKETS) {
      const figures = report.buckets[bucket.name];
      const item = element("li", { "data-bucket": bucket.name });
      item.appendChild(element("span", { class: "swatch bucket-" + bucket.name, "aria-hidden": "true" }));
      item.appendChild(element("span", { class: "legend-name" }, bucket.label));
      const amount = element("strong", {
        class: "legend-revenue",
        "data-value": figures.revenue,
        title: exactMoney(figures.revenue, report.currency),
      }, compactMoney(figures.revenue, report.currency));
      item.appendChild(amount);
      item.appendChild(element("span", { class: "legend-share", "data-value": String(figures.share) }, percent(figures.share)));
      item.appendChild(element("span", { class: "legend-accounts", "data-value": String(figures.accounts) }, figures.accounts + " accounts"));
      legend.appendChild(item);
    }
  }

  function renderOverview(report) {
    setText("period-label", report.period.label, report.period.label);
    const start = report.period.start.slice(0, 10);
    const end = report.period.end.slice(0, 10);
    setText("period-range", start + " to " + end + " (end excluded), " + report.period.timezone + ", in " + report.currency + ", rule " + report.rollup);
    setText("total-revenue", compactMoney(report.total_revenue, report.currency), report.total_revenue);
    byId("total-revenue").setAttribute("title", exactMoney(report.total_revenue, report.currency));
    setText("covered-revenue", compactMoney(report.covered_revenue, report.currency), report.covered_revenue);
    byId("covered-revenue").setAttribute("title", exactMoney(report.covered_revenue, report.currency));
    setText("total-accounts", String(report.accounts.total), report.accounts.total);
    renderGauge(report);
    renderBar(report);
    setText("nps", "NPS: respondents " + signed(report.nps.respondent) + ", accounts " + signed(report.nps.account) + ", revenue-weighted " + signed(report.nps.revenue_weighted) + ". Scored responses: " + report.responses.scored + ".");
  }

  // --- Rendering: trend ----------------------------------------------------------------

  function renderTrend(trend, currency, target) {
    const chart = byId("trend-chart");
    const title = byId("trend-label");
    clearChildren(chart, title);
    // The drawing is as wide as its box, so its text keeps its size on a phone.
    const width = Math.max(320, Math.round(chart.getBoundingClientRect().width) || 720);
    chart.setAttribute("viewBox", "0 0 " + width + " 280");
    const periods = trend.periods;
    const left = 56;
    const right = width - 44;
    const top = 16;
    const bottom = 228;
    const height = bottom - top;
    const slot = (right - left) / Math.max(periods.length, 1);
    let maximum = 0n;
    for (const period of periods) {
      const total = hundredths(period.total_revenue);
      if (total > maximum) maximum = total;
    }
    const scale = (amount) => (maximum === 0n ? 0 : Number((hundredths(amount) * 100000n) / maximum) / 100000);

    // Axes: revenue on the left, coverage on the right.
    chart.appendChild(svgElement("line", { x1: left, y1: bottom, x2: right, y2: bottom, class: "axis" }));
    chart.appendChild(svgElement("text", { x: left - 6, y: top + 4, "text-anchor": "end", class: "axis-label" }, compactMoney(maximum === 0n ? "0" : (maximum / 100n).toString(), currency)));
    chart.appendChild(svgElement("text", { x: left - 6, y: bottom, "text-anchor": "end", class: "axis-label" }, compactMoney("0", currency)));
    chart.appendChild(svgElement("text", { x: right + 6, y: top + 4, class: "axis-label" }, "100%"));
    chart.appendChild(svgElement("text", { x: right + 6, y: bottom, class: "axis-label" }, "0%"));
    const targetY = bottom - target * height;
    chart.appendChild(svgElement("line", { x1: left, y1: targetY, x2: right, y2: targetY, class: "target-line" }));
    chart.appendChild(svgElement("text", { x: right + 6, y: targetY + 4, class: "axis-label" }, percent(target)));

    const points = [];
    periods.forEach((period, index) => {
      const x = left + index * slot + slot * 0.2;
      const barWidth = slot * 0.6;
      let y = bottom;
      for (const bucket of BUCKETS) {
        const barHeight = scale(period.buckets[bucket.name].revenue) * height;
        y -= barHeight;
        const rect = svgElement("rect", { x: x.toFixed(2), y: y.toFixed(2), width: barWidth.toFixed(2), height: barHeight.toFixed(2), class: "bucket-" + bucket.name });
        rect.appendChild(svgElement("title", {}, period.period.label + " " + bucket.label + ": " + compactMoney(period.buckets[bucket.name].revenue, currency)));
        chart.appendChild(rect);
      }
      // "Q1" under each bar and the year under the first bar and each Q1 only, so that
      // 8 labels fit beside each other on a phone.
      const [year, quarter] = period.period.label.split("-");
      const middle = (x + barWidth / 2).toFixed(2);
      chart.appendChild(svgElement("text", { x: middle, y: bottom + 18, "text-anchor": "middle", class: "axis-label" }, quarter));
      if (index === 0 || quarter === "Q1") {
        chart.appendChild(svgElement("text", { x: middle, y: bottom + 34, "text-anchor": "middle", class: "axis-label" }, year));
      }
      if (period.coverage !== null) {
        points.push([x + barWidth / 2, bottom - Math.min(period.coverage, 1) * height, period]);
      }
    });
    if (points.length > 0) {
      const path = points.map(([x, y], index) => (index === 0 ? "M " : "L ") + x.toFixed(2) + " " + y.toFixed(2)).join(" ");
      chart.appendChild(svgElement("path", { d: path, class: "coverage-line" }));
      for (const [x, y, period] of points) {
        const dot = svgElement("circle", { cx: x.toFixed(2), cy: y.toFixed(2), r: "4.5", class: "coverage-dot" });
        dot.appendChild(svgElement("title", {}, period.period.label + " coverage " + percent(period.coverage)));
        chart.appendChild(dot);
      }
    }
    const first = periods[0];
    const last = periods[periods.length - 1];
    title.textContent = first
      ? "Coverage from " + first.period.label + " (" + percent(first.coverage) + ") to " + last.period.label + " (" + percent(last.coverage) + "), against a target of " + percent(target) + ". The table below lists every quarter."
      : "No quarters to show.";

    const body = byId("trend-table").tBodies[0];
    clearChildren(body);
    for (const period of periods) {
      const row = element("tr");
      row.appendChild(element("th", { scope: "row" }, period.period.label));
      row.appendChild(element("td", { class: "number" }, percent(period.coverage)));
      for (const bucket of BUCKETS) {
        row.appendChild(element("td", { class: "number" }, compactMoney(period.buckets[bucket.name].revenue, currency)));
      }
      body.appendChild(row);
    }
  }

  // --- Rendering: lists and segments ---------------------------------------------------

  function accountCell(item) {
    const cell = element("td");
    cell.appendChild(element("span", { class: "account-name" }, item.name || item.account_external_id));
    if (item.name) cell.appendChild(element("span", { class: "account-id" }, item.account_external_id));
    return cell;
  }

  function renderAtRisk(page, currency) {
    const body = byId("at-risk-table").tBodies[0];
    clearChildren(body);
    for (const item of page.items) {
      const row = element("tr", { "data-account": item.account_external_id });
      row.appendChild(accountCell(item));
      row.appendChild(element("td", { class: "number", title: exactMoney(item.revenue, currency) }, compactMoney(item.revenue, currency)));
      row.appendChild(element("td", { class: "number" }, String(item.score)));
      row.appendChild(element("td", { class: "comment" }, item.comment || ""));
      body.appendChild(row);
    }
    const more = page.next_cursor ? " More accounts are at risk; the API lists them all." : "";
    byId("at-risk-summary").textContent = page.items.length === 0
      ? "No account is at risk in this period."
      : "The " + page.items.length + " largest at-risk accounts by revenue." + more;
  }

  function renderSurveyNext(page, report) {
    const body = byId("survey-next-table").tBodies[0];
    clearChildren(body);
    const currency = report.currency;
    const reachedAt = page.items.findIndex((item) => item.reaches_target);
    page.items.forEach((item, index) => {
      const row = element("tr", { "data-account": item.account_external_id });
      if (index === reachedAt) row.setAttribute("class", "target-row");
      const cell = accountCell(item);
      if (index === reachedAt) {
        cell.appendChild(element("span", { class: "badge" }, "target reached"));
      }
      row.appendChild(cell);
      row.appendChild(element("td", { class: "number", title: exactMoney(item.revenue, currency) }, compactMoney(item.revenue, currency)));
      row.appendChild(element("td", { class: "number" }, percent(item.cumulative_coverage)));
      body.appendChild(row);
    });
    const summary = byId("survey-next-summary");
    summary.removeAttribute("data-reached-at");
    if (page.items.length === 0) {
      summary.textContent = "Every account of the revenue base has answered.";
    } else if (report.meets_target) {
      summary.textContent = "The target of " + percent(report.target) + " is met; these accounts would add the most.";
    } else if (reachedAt >= 0) {
      let revenue = 0n;
      for (const item of page.items.slice(0, reachedAt + 1)) revenue += hundredths(item.revenue);
      const amount = compactMoney((revenue / 100n).toString() + "." + (revenue % 100n).toString().padStart(2, "0"), currency);
      summary.setAttribute("data-reached-at", String(reachedAt + 1));
      summary.textContent = "Answers from the first " + (reachedAt + 1) + " accounts (" + amount + ") reach the target of " + percent(report.target) + ".";
    } else {
      const last = page.items[page.items.length - 1];
      summary.textContent = "The " + page.items.length + " largest accounts reach " + percent(last.cumulative_coverage) + "; the target of " + percent(report.target) + " needs more.";
    }
  }

  function miniBar(segment) {
    const svg = svgElement("svg", { viewBox: "0 0 100 12", preserveAspectRatio: "none", class: "mini-bar", "aria-hidden": "true" });
    const total = hundredths(segment.total_revenue);
    let x = 0;
    for (const bucket of BUCKETS) {
      const width = total === 0n ? 0 : Number((hundredths(segment.buckets[bucket.name].revenue) * 10000n) / total) / 100;
      svg.appendChild(svgElement("rect", { x: x.toFixed(2), y: "0", width: width.toFixed(2), height: "12", class: "bucket-" + bucket.name }));
      x += width;
    }
    return svg;
  }

  function renderSegments(report) {
    const body = byId("segments-table").tBodies[0];
    clearChildren(body);
    // The report lists every tier even when empty, and `unassigned` even when every
    // account has a value. Rows without accounts are left out.
    for (const segment of report.segments.filter((item) => item.accounts.total > 0)) {
      const row = element("tr", { "data-segment": segment.segment });
      row.appendChild(element("th", { scope: "row" }, segment.unassigned ? "(none)" : segment.segment));
      row.appendChild(element("td", { class: "number", title: exactMoney(segment.total_revenue, segment.currency) }, compactMoney(segment.total_revenue, segment.currency)));
      row.appendChild(element("td", { class: "number" }, String(segment.accounts.total)));
      row.appendChild(element("td", { class: "number" }, percent(segment.coverage)));
      const barCell = element("td", { class: "bar-column" });
      barCell.appendChild(miniBar(segment));
      row.appendChild(barCell);
      body.appendChild(row);
    }
  }

  // --- Loading -------------------------------------------------------------------------

  function handleFailure(error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut("The API key was rejected: " + error.message);
      return;
    }
    setStatus("Loading the report failed: " + error.message);
    byId("report").setAttribute("aria-busy", "false");
  }

  async function loadSegments(generation) {
    const parameters = { period: byId("period").value, rollup: byId("rollup").value, by: byId("segment-by").value };
    const segments = await api("/v1/coverage/segments", parameters);
    if (generation === state.generation) renderSegments(segments);
  }

  async function loadReport() {
    state.generation += 1;
    const generation = state.generation;
    const period = byId("period").value;
    const rollup = byId("rollup").value;
    writeHash();
    setStatus("Loading " + period + "…");
    byId("report").setAttribute("aria-busy", "true");
    const range = trendRange(period, state.tenant);
    try {
      const [report, trend, atRisk, surveyNext] = await Promise.all([
        api("/v1/coverage", { period: period, rollup: rollup }),
        api("/v1/coverage/trend", { from: range.from, to: range.to, rollup: rollup }),
        api("/v1/reports/at-risk", { period: period, rollup: rollup, limit: AT_RISK_ROWS }),
        api("/v1/reports/survey-next", { period: period, limit: SURVEY_NEXT_ROWS }),
        loadSegments(generation),
      ]);
      if (generation !== state.generation) return;
      renderOverview(report);
      state.trend = [trend, report.currency, report.target];
      renderTrend(...state.trend);
      renderAtRisk(atRisk, report.currency);
      renderSurveyNext(surveyNext, report);
      byId("report").setAttribute("data-loaded", period + "|" + report.rollup);
      byId("report").setAttribute("aria-busy", "false");
      setStatus("Showing " + report.period.label + " under the " + report.rollup + " rule.");
    } catch (error) {
      if (generation === state.generation) handleFailure(error);
    }
  }

  // --- Sign-in -------------------------------------------------------------------------

  function showSignIn(message) {
    byId("report").hidden = true;
    byId("sign-out").hidden = true;
    byId("sign-in").hidden = false;
    byId("tenant-name").textContent = "";
    byId("sign-in-error").textContent = message || "";
    byId("api-key").value = "";
    byId("api-key").focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY_STORAGE);
    state.key = null;
    state.tenant = null;
    state.generation += 1;
    state.trend = null;
    showSignIn(message);
  }

  async function start(key) {
    state.key = key;
    let tenant;
    try {
      tenant = await api("/v1/tenant");
    } catch (error) {
      const reason = error instanceof ApiError && error.status === 403
        ? "This key lacks the read scope, which the dashboard needs."
        : "Sign-in failed: " + error.message;
      signOut(reason);
      return;
    }
    sessionStorage.setItem(KEY_STORAGE, key);
    state.tenant = tenant;
    byId("tenant-name").textContent = "Tenant " + tenant.name + " · " + tenant.reporting_currency;
    byId("sign-in").hidden = true;
    byId("sign-out").hidden = false;
    byId("report").hidden = false;
    fillPeriods(tenant);
    const saved = readHash();
    byId("rollup").value = tenant.default_rollup;
    selectIfPresent(byId("period"), saved.period);
    selectIfPresent(byId("rollup"), saved.rollup);
    selectIfPresent(byId("segment-by"), saved.by);
    byId("main").focus();
    await loadReport();
  }

  function init() {
    byId("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = byId("api-key").value.trim();
      if (!key) {
        byId("sign-in-error").textContent = "Enter an API key.";
        return;
      }
      byId("sign-in-error").textContent = "";
      start(key);
    });
    byId("sign-out").addEventListener("click", () => signOut("Signed out."));
    byId("controls").addEventListener("submit", (event) => event.preventDefault());
    byId("period").addEventListener("change", loadReport);
    byId("rollup").addEventListener("change", loadReport);
    byId("segment-by").addEventListener("change", () => {
      writeHash();
      loadSegments(state.generation).catch(handleFailure);
    });
    window.addEventListener("resize", () => {
      clearTimeout(state.resizeTimer);
      state.resizeTimer = setTimeout(() => {
        if (state.trend) renderTrend(...state.trend);
      }, 150);
    });
    const key = sessionStorage.getItem(KEY_STORAGE);
    if (key) {
      start(key);
    } else {
      showSignIn();
    }
  }

  document.addEventListener("DOMContentLoaded", init);
})();
