/* What each section of the page shows, built from the API's answers (no HTML strings: text is
 * always set as text, so nothing from the API can inject markup). */
"use strict";
(function (global) {
  const C = global.OsmanthusCharts;
  const MONTHLY = new Set(["social_security", "transit"]);
  const FIELDS = {
    social_security: ["status", "contribution_base", "arrears"],
    transit: ["rides", "bike_rides", "overdue_returns", "unpaid_fees", "fare_evasions", "damage_incidents"],
    court: ["case_no", "amount", "status", "closed_on"],
    penalty: ["decision_no", "category", "severity", "fine", "window_months", "repaired_on"],
    positive: ["kind", "hours", "event_no"],
  };
  const MONEY = new Set(["contribution_base", "arrears", "unpaid_fees", "amount", "fine"]);
  const OPTIONAL = new Set(["arrears", "overdue_returns", "unpaid_fees", "fare_evasions", "damage_incidents", "closed_on", "repaired_on", "hours", "window_months"]);

  /** h("p", {class: "x", onclick: f, "data-id": 1}, "text", child) */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    children.flat().forEach((c) => c !== null && c !== undefined && node.append(c));
    return node;
  }
  // Scores are shown cut to a whole number, never rounded up: 599.6 is "fair" (below 600) and
  // must read 599, and "n points to go" (rounded up) then always adds up to the minimum.
  const pts = (v) => `${v >= 0 ? "+" : "−"}${Math.abs(Math.round(v))}`;
  const band = (T, lang, b, bz) => (lang === "zh" ? bz || T.bands[b] : T.bands[b] || b);
  const recordKey = (r) => `${r.source}:${r.record_id}`;
  const day = (d) => String(d).slice(0, 10);
  // one date format on the whole page, in both languages: YYYY-MM-DD (and HH:MM), city time
  const moment = (lang, iso) => new Date(iso).toLocaleString("sv-SE", { timeZone: "Asia/Shanghai",
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
  // a consent "until D" ends at the next midnight in the city (UTC+8): show D, the city's day
  const cityDay = (iso, back) => new Date(Date.parse(iso) - (back ? 1 : 0)).toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
  const recordDate = (r) => (MONTHLY.has(r.source) ? day(r.date).slice(0, 7) : day(r.date));
  const partnerName = (T, S, id) => (T.partners && T.partners[id]) || S.partnerNames[id] || id;
  const perkName = (S, lang, id) => {
    const p = (S.perks ? S.perks.perks : []).find((x) => x.perk_id === id);
    return p ? (lang === "zh" ? p.name_zh : p.name_en) : id;
  };

  function score(T, S) {
    const s = S.score, b = band(T, S.lang, s.band, s.band_zh), out = [];
    out.push(h("div", { class: "score-head" },
      C.gauge(s.score, s.band, T.gaugeLabel(Math.floor(s.score), b)),
      h("p", { class: `band-badge ${C.bandClass(s.band)}`, id: "band" }, h("span", { "aria-hidden": "true", text: "◆ " }), `${T.band}${T.colon}`, h("strong", { text: b })),
      h("p", { class: "score-number" }, h("span", { class: "visually-hidden", text: `${T.scoreTitle}: ` }), h("strong", { id: "score-value", text: String(Math.floor(s.score)) })),
      h("p", { class: "meta", id: "score-dates", text: `${T.asOf} ${day(s.as_of)} · ${T.today} ${day(s.today)} · ${T.model} ${s.model_version}` })));
    out.push(h("h3", { text: T.trendTitle }));
    const trend = s.trend.length ? s.trend : [{ as_of: s.as_of, score: s.score, band: s.band }];
    const first = Math.floor(trend[0].score), last = Math.floor(trend[trend.length - 1].score);
    out.push(C.trend(trend, T.trendLabel(trend.length, first, last)));
    if (trend.length < 2) out.push(h("p", { class: "meta", text: T.trendOne }));
    out.push(h("ol", { class: "visually-hidden" }, trend.map((p) => h("li", { text: `${day(p.as_of)}: ${Math.floor(p.score)}` }))));
    return out;
  }

  // Whole points that add up (the API's): base + each reason + smaller factors + clip = score.
  const stepValue = (T, points, cls) => h("span", { class: `wf-value ${cls}` }, h("span", { "aria-hidden": "true", text: points >= 0 ? "▲ " : "▼ " }),
    `${pts(points)} ${T.points}`, h("span", { class: "visually-hidden", text: ` (${points >= 0 ? T.up : T.down})` }));

  function reasons(T, S, actions) {
    const e = S.explanation, zh = S.lang === "zh", text = (r) => (zh ? r.text_zh : r.text_en) || r.feature;
    const smaller = e.smaller_factors || [];
    const rows = [{ kind: "base", points: e.base_points, text: T.base }];
    e.reasons.forEach((r) => rows.push({ kind: "step", points: r.points, text: text(r) }));
    if (smaller.length || e.other_points) rows.push({ kind: "step", points: e.other_points, text: T.other, smaller: true });
    if (e.clip_points) rows.push({ kind: "step", points: e.clip_points, text: T.clip });
    rows.push({ kind: "total", points: e.score, text: T.total });
    const bars = C.waterfall(rows);
    const list = h("ol", { class: "waterfall", id: "waterfall" }, rows.map((row, i) => {
      const { bar, cls } = bars[i];
      const value = row.kind === "step" ? stepValue(T, row.points, cls) : h("span", { class: "wf-value", text: `${row.points} ${T.points}` });
      let label = h("span", { text: row.text });
      if (row.smaller && smaller.length) { // one tap shows every factor inside "smaller factors"
        label = h("button", { type: "button", class: "link", id: "smaller-toggle", "aria-expanded": S.smallerOpen ? "true" : "false",
          "aria-controls": "smaller-factors", onclick: () => actions.toggleSmaller() },
        h("span", { "aria-hidden": "true", text: S.smallerOpen ? "▾ " : "▸ " }), `${row.text} (${S.smallerOpen ? T.hideAll : T.showAll(smaller.length)})`);
      }
      const item = h("li", { class: `wf-row ${cls}${row.smaller ? " smaller" : ""}` }, h("div", { class: "wf-text" }, label, value), bar);
      if (row.smaller && S.smallerOpen) {
        item.append(h("ol", { class: "smaller-factors", id: "smaller-factors" }, smaller.map((r) => {
          const c = r.points >= 0 ? "up" : "down";
          return h("li", { class: `wf-sub ${c}`, "data-feature": r.feature }, h("div", { class: "wf-text" }, h("span", { text: text(r) }), stepValue(T, r.points, c)));
        })));
      }
      return item;
    }));
    return [h("p", { class: "meta", text: e.no_record ? T.noRecord : T.reasonsIntro }), list];
  }

  function recordDetails(T, r) {
    return FIELDS[r.source].filter((f) => {
      const v = r.details[f];
      return v !== null && v !== undefined && v !== "" && !(OPTIONAL.has(f) && Number(v) === 0);
    }).map((f) => {
      const v = r.details[f];
      const shown = MONEY.has(f) ? T.yuan(v) : (T.values[v] || String(v));
      return `${T.fields[f]} ${shown}`;
    }).join(" · ");
  }

  function record(T, S, r, actions) {
    const key = recordKey(r), zh = S.lang === "zh";
    const status = r.counts
      ? h("span", { class: "badge counts" }, h("span", { "aria-hidden": "true", text: "✓ " }), T.counts)
      : h("span", { class: "badge not-counts" }, h("span", { "aria-hidden": "true", text: "○ " }), `${T.notCounts}${T.colon}${(zh ? r.reason_zh : r.reason_en) || ""}`);
    const item = h("li", { class: `record ${r.counts ? "counts" : "not-counts"}`, "data-record-id": r.record_id, "data-source": r.source, id: `rec-${r.source}-${r.record_id}` },
      h("div", { class: "record-head" }, h("strong", { text: recordDate(r) }), status),
      h("p", { class: "record-details", text: recordDetails(T, r) }));
    if (r.dispute) {
      const resolution = r.dispute.resolution ? ` · ${r.dispute.resolution}` : "";
      item.append(h("p", { class: `badge dispute-${r.dispute.state}` }, h("span", { "aria-hidden": "true", text: "⚑ " }),
        `${T.disputeState[r.dispute.state] || r.dispute.state} · ${T.due} ${day(r.dispute.due_on)}${resolution}`));
      if (r.dispute.state === "open") {
        item.append(h("button", { type: "button", class: "withdraw-dispute", onclick: () => actions.withdrawDispute(r.dispute.dispute_id), text: T.withdrawDispute }));
      }
    }
    const rp = r.repair, tip = (S.advice && S.advice.records || []).find((a) => a.record_id === r.record_id && a.source === r.source);
    if (rp && rp.adverse) {
      const parts = [];
      if (tip && tip.points_restored > 0) parts.push(T.restores(Math.round(tip.points_restored)));
      if (rp.repairable && rp.repairable_from) parts.push(`${T.repairableFrom} ${day(rp.repairable_from)}`);
      // a monthly record stays on file five years, but the score's windows look back 12 to 36
      // months: say both, not "stops counting" alone (its exact cost today is `restores`)
      if (rp.expires_on) parts.push(MONTHLY.has(r.source) ? `${T.leavesFileOn} ${day(rp.expires_on)} (${T.fadesSooner})` : `${T.expiresOn} ${day(rp.expires_on)}`);
      const obligation = S.lang === "zh" ? rp.obligation_zh : rp.obligation_en;
      if (obligation) parts.push(obligation);
      if (rp.application) parts.push(`${T.repairState[rp.application.state] || rp.application.state}${rp.application.resolution ? ` · ${rp.application.resolution}` : ""}`);
      item.append(h("p", { class: "meta repair-terms", text: parts.join(" · ") }));
    }
    if (S.disputing === key) {
      const id = `statement-${r.record_id}`, warning = S.confirmNeeded[key];
      item.append(h("form", { class: "dispute-form", onsubmit: (ev) => { ev.preventDefault(); actions.dispute(r, ev.target.statement.value, ev.target.confirm ? ev.target.confirm.checked : false); } },
        h("label", { for: id, text: T.statement }),
        h("textarea", { id, name: "statement", required: true, maxlength: 2000, rows: 3, text: S.draft[key] || "" }),
        warning ? h("p", { class: "field-error", id: `confirm-warning-${r.record_id}`, role: "alert", text: warning }) : null,
        warning ? h("label", { class: "confirm" }, h("input", { type: "checkbox", name: "confirm", id: `confirm-${r.record_id}` }), T.confirmDispute) : null,
        h("div", { class: "row" }, h("button", { type: "submit", class: "primary", text: T.submitDispute }),
          h("button", { type: "button", onclick: () => actions.cancelDispute(), text: T.cancel }))));
    } else if (r.can_dispute) {
      item.append(h("button", { type: "button", class: "dispute-button", onclick: () => actions.startDispute(r), text: T.disputeThis }));
    }
    return item;
  }

  function records(T, S, actions) {
    const page = S.records, out = [h("p", { class: "meta", id: "records-summary", text: T.recordsSummary(page.counting, page.not_counting) })];
    for (const source of Object.keys(T.sources)) {
      const mine = page.records.filter((r) => r.source === source);
      if (!mine.length) continue;
      const counting = mine.filter((r) => r.counts).length;
      const shown = S.shown[source] || 8;
      const group = h("details", { class: "source", "data-source": source, open: S.openSources.has(source) },
        h("summary", {}, h("span", { class: "source-name", text: T.sources[source] }), h("span", { class: "meta", text: T.recordsSummary(counting, mine.length - counting) })),
        h("ul", { class: "records" }, mine.slice(0, shown).map((r) => record(T, S, r, actions))));
      group.addEventListener("toggle", () => (group.open ? S.openSources.add(source) : S.openSources.delete(source)));
      if (mine.length > shown) group.append(h("button", { type: "button", class: "more", onclick: () => actions.showMore(source), text: `${T.showMore} (${mine.length - shown})` }));
      out.push(group);
    }
    return out;
  }

  function perks(T, S, actions) {
    const page = S.perks, zh = S.lang === "zh";
    return page.perks.map((p) => {
      const st = p.status === "yes" ? ["have", "✓"] : p.status === "pending" ? ["pending", "◔"] : ["locked", "✗"];
      const progress = Math.max(0, Math.min(1, page.score / p.min_score));
      const fill = h("span", { class: "fill" });
      fill.style.width = `${(progress * 100).toFixed(1)}%`;
      const card = h("article", { class: `perk ${st[0]}`, "data-perk-id": p.perk_id },
        h("h3", { text: zh ? p.name_zh : p.name_en }),
        h("p", { class: "meta", text: `${T.partner}${T.colon}${partnerName(T, S, p.partner_id)} · ${T.minScore} ${Math.floor(p.min_score)}` }),
        h("p", { class: `perk-status ${st[0]}` }, h("span", { "aria-hidden": "true", text: `${st[1]} ` }), T[st[0]]),
        h("div", { class: "bar", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": Math.floor(p.min_score), "aria-valuenow": Math.min(Math.floor(page.score), Math.floor(p.min_score)),
          "aria-label": `${zh ? p.name_zh : p.name_en}: ${Math.floor(page.score)} / ${Math.floor(p.min_score)}` }, fill),
        h("p", { class: "meta", text: p.points_needed > 0 ? `${Math.floor(page.score)} / ${Math.floor(p.min_score)} · ${T.needs(Math.ceil(p.points_needed))}` : `${Math.floor(page.score)} / ${Math.floor(p.min_score)}` }));
      const tip = (S.advice && S.advice.perks || []).find((a) => a.perk_id === p.perk_id);
      if (tip) {
        const when = tip.unlocks_by_itself_on ? ` · ${T.byItself} ${day(tip.unlocks_by_itself_on)}` : "";
        card.append(h("p", { class: `advice ${tip.reachable_this_year ? "reachable" : "out-of-reach"}`, text: `${zh ? tip.text_zh : tip.text_en}${when}` }));
      }
      if (p.conditions.length) {
        card.append(h("ul", { class: "conditions" }, p.conditions.map((c) => h("li", { class: c.met ? "met" : "not-met" },
          h("span", { "aria-hidden": "true", text: c.met ? "✓ " : "✗ " }), `${zh ? c.text_zh : c.text_en} — ${c.met ? T.met : T.notMet}`))));
      }
      if (p.unlocked_by.length) {
        card.append(h("p", { class: "meta", text: T.unlockBy }), h("ul", { class: "unlocks" }, p.unlocked_by.slice(0, 5).map((u) =>
          h("li", {}, `${T.sources[u.source]} · ${MONTHLY.has(u.source) ? day(u.date).slice(0, 7) : day(u.date)} — ${T.scoreWithout(Math.floor(u.score_without))} `,
            h("button", { type: "button", class: "link", "data-record-id": u.record_id, onclick: () => actions.showRecord(u.source, u.record_id), text: T.goToRecord })))));
      }
      return card;
    });
  }

  function review(T, S, actions) {
    // One request per perk (PIPL Art. 24): only that perk waits; a pending one can be withdrawn.
    const zh = S.lang === "zh", out = [h("p", { class: "meta", text: T.reviewIntro })];
    const names = Object.fromEntries(S.perks.perks.map((p) => [p.perk_id, zh ? p.name_zh : p.name_en]));
    const latest = S.review.find((r) => r.state !== "withdrawn");
    const shown = latest ? latest.state : "none";
    let state = `${T.reviewTitle}${T.colon}${T.reviewState[shown] || shown}`;
    if (latest) state += ` · ${names[latest.perk_id] || latest.perk_id}`;
    if (latest && latest.outcome) state += ` (${T.reviewOutcome[latest.outcome] || latest.outcome})`;
    out.push(h("p", { id: "review-state", class: `badge review-${shown}` }, h("span", { "aria-hidden": "true", text: shown === "pending" ? "◔ " : "• " }), state));
    out.push(h("ul", { class: "reviews" }, S.review.map((r) => h("li", { "data-review-id": r.review_id },
      `${names[r.perk_id] || r.perk_id} · ${T.reviewState[r.state] || r.state}${r.outcome ? ` (${T.reviewOutcome[r.outcome] || r.outcome})` : ""}${r.outcome_reason ? ` · ${r.outcome_reason}` : ""} `,
      r.state === "pending" ? h("button", { type: "button", class: "withdraw-review", onclick: () => actions.withdrawReview(r.review_id), text: T.withdraw }) : null))));
    const pending = new Set(S.review.filter((r) => r.state === "pending").map((r) => r.perk_id));
    const open = S.perks.perks.filter((p) => !pending.has(p.perk_id));
    if (open.length) {
      out.push(h("form", { onsubmit: (ev) => { ev.preventDefault(); actions.askReview(ev.target.perk.value, ev.target.reason.value); } },
        h("label", { for: "review-perk", text: T.reviewPerk }),
        h("select", { id: "review-perk", name: "perk" }, open.map((p) => h("option", { value: p.perk_id, text: zh ? p.name_zh : p.name_en }))),
        h("label", { for: "review-reason", text: T.reviewReason }),
        h("textarea", { id: "review-reason", name: "reason", required: true, maxlength: 2000, rows: 2 }),
        h("button", { type: "submit", class: "primary", text: T.askReview })));
    }
    return out;
  }

  function consents(T, S, actions) {
    const zh = S.lang === "zh", partners = [...new Set(S.perks.perks.map((p) => p.partner_id))];
    const chosen = S.consentPartner || partners[0];
    // the service's today, not the browser's: a consent's `until` counts from the one clock
    const today = new Date(`${day(S.score.today)}T00:00:00Z`), fmt = (d) => d.toISOString().slice(0, 10), plus = (n) => new Date(today.getTime() + n * 864e5);
    const form = h("form", { id: "consent-form", onchange: () => actions.grantChanged(), onsubmit: (ev) => {
      ev.preventDefault();
      const f = ev.target, perks = [...f.querySelectorAll("input[name=perk]:checked")].map((i) => i.value);
      actions.grant(f.partner.value, perks, f.until.value);
    } },
    h("label", { for: "consent-partner", text: T.partner }),
    h("select", { id: "consent-partner", name: "partner", onchange: (ev) => actions.choosePartner(ev.target.value) },
      partners.map((id) => h("option", { value: id, selected: id === chosen, text: partnerName(T, S, id) }))),
    h("fieldset", {}, h("legend", { text: T.perks }), S.perks.perks.filter((p) => p.partner_id === chosen).map((p) =>
      h("label", { class: "check" }, h("input", { type: "checkbox", name: "perk", value: p.perk_id, checked: true }), zh ? p.name_zh : p.name_en))),
    h("label", { for: "consent-until", text: T.until }),
    h("input", { id: "consent-until", name: "until", type: "date", required: true, value: fmt(plus(90)), min: fmt(plus(1)), max: fmt(plus(360)) }),
    h("button", { type: "submit", class: "primary", text: T.grant }));
    const out = [h("p", { class: "meta", text: T.consentsIntro }), form];
    if (S.granted) {
      // the server draws the code (segno); its viewBox is the symbol plus a 4-module quiet zone
      const qr = new DOMParser().parseFromString(S.granted.qr_svg, "image/svg+xml").documentElement;
      qr.id = "consent-qr";
      qr.setAttribute("role", "img");
      qr.setAttribute("aria-label", T.qrLabel);
      qr.setAttribute("data-modules", String(qr.viewBox.baseVal.width - 8));
      out.push(h("figure", { class: "qr", "data-consent-id": S.granted.consent_id },
        h("figcaption", { text: T.tokenShown }), qr,
        h("label", { for: "consent-token", text: T.tokenText }),
        h("textarea", { id: "consent-token", readonly: true, rows: 3, text: S.granted.token }),
        h("button", { type: "button", onclick: (ev) => actions.copy(S.granted.token, ev.target), text: T.copy })));
    }
    out.push(S.consents.length ? h("ul", { class: "consents", id: "consent-list" }, S.consents.map((c) => h("li", { "data-consent-id": c.consent_id, class: `consent ${c.state}` },
      h("div", { class: "record-head" }, h("strong", { text: partnerName(T, S, c.partner_id) }),
        h("span", { class: `badge state-${c.state}` }, h("span", { "aria-hidden": "true", text: c.state === "active" ? "✓ " : "○ " }), T.consentState[c.state] || c.state)),
      h("p", { class: "meta", text: `${c.perks.map((p) => perkName(S, S.lang, p)).join("、")} · ${T.granted} ${cityDay(c.granted_at)} · ${T.until} ${cityDay(c.expires_at, true)}` }),
      c.state === "active" ? h("button", { type: "button", class: "revoke", onclick: () => actions.revoke(c), text: T.revoke }) : null)))
      : h("p", { class: "meta", text: T.noConsents }));
    return out;
  }

  const VERIFY_MARK = { verified: "✓ ", failed: "✗ ", unsealed: "○ ", checking: "… " };

  /** The access log, each entry with what the browser found when it checked it (verify.js). */
  function access(T, S) {
    if (!S.access.length) return [h("p", { class: "meta", text: T.noAccess })];
    const head = S.treeHead;
    const note = head ? T.verifyNote(head.tree_size, moment(S.lang, new Date(head.timestamp).toISOString()), head.key_id) : T.verifyNoHead;
    return [h("p", { class: "meta", id: "access-head", text: note }), h("ol", { class: "access", id: "access-list" }, S.access.slice(0, 50).map((a, i) => {
      const who = a.actor === "citizen" ? T.you : a.partner_id ? partnerName(T, S, a.partner_id) : a.actor;
      const bits = [T.actions[a.action] || a.action];
      if (a.perk_id) bits.push(perkName(S, S.lang, a.perk_id));
      if (a.answer) bits.push(`${T.answer}${T.colon}${T.answers[a.answer] || a.answer}`);
      const state = (S.accessStates && S.accessStates[i]) || "checking";
      return h("li", { "data-verified": state, "data-leaf-index": a.leaf_index === null || a.leaf_index === undefined ? "" : String(a.leaf_index) },
        h("time", { datetime: a.at, text: moment(S.lang, a.at) }), h("strong", { text: who }), h("span", { text: bits.join(" · ") }),
        h("span", { class: `badge verify-${state}` }, h("span", { "aria-hidden": "true", text: VERIFY_MARK[state] }), T.verify[state]));
    }))];
  }

  global.OsmanthusViews = { h, score, reasons, records, perks, review, consents, access, recordKey };
})(window);
