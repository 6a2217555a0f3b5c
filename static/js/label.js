/* The labeling page: keyboard-first labeling, the next item prefetched, leases renewed and released. */
(() => {
  "use strict";

  const root = document.getElementById("labeling");
  if (!root) return;

  const stage = document.getElementById("label-stage");
  const shelf = document.getElementById("label-shelf");
  const toast = document.getElementById("label-toast");
  const status = document.getElementById("label-status");
  const nextUrl = root.dataset.nextUrl;
  const undoUrl = root.dataset.undoUrl;
  const heartbeatMs = Math.max(1000, Number(root.dataset.heartbeatMs) || 200000);
  const csrfToken = (() => {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch {
      return "";
    }
  })();

  const labelButtons = Array.from(root.querySelectorAll(".label-button"));
  const skipButton = root.querySelector('button[data-action="skip"]');
  const undoButton = root.querySelector('button[data-action="undo"]');
  const reasonButton = root.querySelector('button[data-action="skip-reason"]');
  const skipForm = document.getElementById("label-skip-form");
  const skipInput = skipForm && skipForm.querySelector("input[name=reason]");
  const byKey = new Map();
  const byLowerKey = new Map();
  for (const button of labelButtons) {
    const key = button.dataset.key;
    if (!key) continue;
    byKey.set(key, button);
    if (!byLowerKey.has(key.toLowerCase())) byLowerKey.set(key.toLowerCase(), button);
  }
  const keySet = (button) =>
    new Set((button ? button.dataset.keys.split("|") : []).filter((k) => k !== "").map((k) => k.toLowerCase()));
  const skipKeys = keySet(skipButton);
  const undoKeys = keySet(undoButton);

  let current = stage.querySelector("[data-kind]"); // the item, all-done or error element on the stage
  const upcoming = []; // prefetched item elements, kept in the hidden shelf
  const busy = new Set(); // lease ids whose submit or skip is on its way
  const inflight = new Set(); // promises of those submits and skips
  let pending = null; // the running request for the next item
  let exhausted = false; // the server said nothing else is waiting
  let doneElement = null;
  let undoing = false;
  let closing = false;
  let lastBeat = performance.now();

  const isItem = (el) => Boolean(el) && el.dataset.kind === "item";

  // Time on an item counts only while the page is visible.
  const clock = { spent: 0, since: null };
  function clockStart(el) {
    clock.spent = Number(el.dataset.spentMs || 0);
    clock.since = document.hidden ? null : performance.now();
  }
  function clockRead() {
    return Math.round(clock.spent + (clock.since === null ? 0 : performance.now() - clock.since));
  }

  class RequestError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  function parse(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const fragment = template.content;
    takeProgress(fragment);
    return fragment;
  }

  // Progress fragments of overlapping requests can arrive out of order: the one rendered last wins.
  function takeProgress(fragment) {
    const fresh = fragment.querySelector("#label-progress");
    if (!fresh) return;
    fresh.remove();
    fresh.removeAttribute("hx-swap-oob");
    const shown = document.getElementById("label-progress");
    if (!shown) return;
    if (Number(fresh.dataset.renderedAt || 0) < Number(shown.dataset.renderedAt || 0)) return;
    shown.replaceWith(fresh);
    syncDone();
  }

  // The all-done message counts the expert's labels today as the sidebar does, from its newest render.
  function syncDone() {
    const shown = document.getElementById("label-progress");
    if (!shown) return;
    const count = Number(shown.dataset.mineToday || 0);
    for (const el of new Set([current, doneElement])) {
      const today = el && el.dataset.kind === "done" && el.querySelector(".label-done-today");
      if (!today) continue;
      today.hidden = count === 0;
      today.querySelector(".label-done-count").textContent = String(count);
      today.querySelector(".label-done-noun").textContent = count === 1 ? "item" : "items";
    }
  }

  async function post(url, fields, { keepalive = false } = {}) {
    const body = new FormData();
    for (const [name, value] of fields) body.append(name, value);
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        headers: { "X-CSRFToken": csrfToken },
        credentials: "same-origin",
        redirect: "manual",
        keepalive,
      });
    } catch {
      throw new RequestError("The server could not be reached. Check the connection and try again.", 0);
    }
    if (response.type === "opaqueredirect") {
      throw new RequestError("You have been logged out. Reload the page to log in again.", 401);
    }
    if (response.ok) return response;
    if (response.status === 403) {
      throw new RequestError("This page's security token is no longer valid. Reload the page to continue.", 403);
    }
    const text = await response.text().catch(() => "");
    const error = parse(text).querySelector(".label-error");
    const message = error && response.status < 500
      ? error.textContent.trim()
      : `The server could not do this (error ${response.status}). Try again in a moment.`;
    throw new RequestError(message, response.status);
  }

  function beacon(url) {
    const data = new FormData();
    data.append("csrfmiddlewaretoken", csrfToken);
    if (navigator.sendBeacon && navigator.sendBeacon(url, data)) return;
    fetch(url, { method: "POST", body: data, keepalive: true, credentials: "same-origin" }).catch(() => {});
  }

  let toastTimer = null;
  function showError(message) {
    toast.querySelector(".label-toast-text").textContent = message;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toast.hidden = true; }, 12000);
  }

  function note(message) {
    status.textContent = message;
  }

  function flash(button) {
    if (!button) return;
    button.classList.add("pressed");
    setTimeout(() => button.classList.remove("pressed"), 160);
  }

  // Small images are drawn with sharp pixels (CSS); images shrunk to fit are smoothed instead.
  function fitImage(el) {
    const img = el && el.querySelector("img.label-image");
    if (!img) return;
    const apply = () => {
      if (!img.naturalWidth || !img.isConnected) return;
      const box = img.getBoundingClientRect();
      const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight) * devicePixelRatio;
      img.classList.toggle("smooth", scale < 1);
    };
    if (img.complete) apply();
    else img.addEventListener("load", apply, { once: true });
  }

  function show(el) {
    stage.replaceChildren(el);
    current = el;
    clockStart(el);
    const answerable = isItem(el);
    for (const button of labelButtons) {
      button.disabled = !answerable;
      button.classList.toggle("suggested", answerable && button.dataset.labelId === el.dataset.suggested);
    }
    if (skipButton) skipButton.disabled = !answerable;
    if (reasonButton) reasonButton.disabled = !answerable;
    closeSkipForm(); // a reason is for the item it was typed on
    syncDone();
    fitImage(el);
  }

  function showLoading() {
    const el = document.createElement("div");
    el.className = "label-loading";
    el.dataset.kind = "loading";
    el.innerHTML = '<span class="label-spinner" aria-hidden="true"></span>';
    el.append("Loading the next item…");
    show(el);
    return el;
  }

  function showDone() {
    if (doneElement) {
      show(doneElement);
      return;
    }
    const el = document.createElement("article");
    el.className = "label-done";
    el.dataset.kind = "done";
    const title = document.createElement("h2");
    title.textContent = "All done";
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.action = "recheck";
    button.textContent = "Check for new items";
    el.append(title, button);
    show(el);
  }

  function held() {
    const ids = [];
    if (isItem(current)) ids.push(current.dataset.lease);
    for (const el of upcoming) ids.push(el.dataset.lease);
    for (const id of busy) ids.push(id);
    return ids;
  }

  async function fetchNext(retried = false) {
    const answering = Array.from(inflight); // answers sent before this request, perhaps not yet stored
    const response = await post(nextUrl, held().map((id) => ["exclude", id]));
    const el = parse(await response.text()).querySelector("[data-kind]");
    if (!isItem(el)) {
      // The all-done message counts the expert's labels today: one rendered while an answer was
      // still being stored would miss it, so ask again once those answers are in.
      if (answering.length && !retried) {
        await Promise.allSettled(answering);
        return fetchNext(true);
      }
      exhausted = true;
      doneElement = el;
      return;
    }
    // At its lease limit the queue hands back a lease the page already holds (one still being
    // submitted): ask again once those answers are in.
    if (held().includes(el.dataset.lease)) {
      if (retried || !inflight.size) return;
      await Promise.allSettled(Array.from(inflight));
      return fetchNext(true);
    }
    shelf.append(el);
    upcoming.push(el);
    const img = el.querySelector("img");
    if (img) await img.decode().catch(() => {});
  }

  // Keep one item ready behind the current one.
  function fill() {
    if (upcoming.length || exhausted || closing) return Promise.resolve();
    if (!pending) {
      pending = fetchNext()
        .catch((error) => showError(`The next item could not be loaded: ${error.message}`))
        .finally(() => { pending = null; });
    }
    return pending;
  }

  async function advance() {
    if (upcoming.length) {
      show(upcoming.shift());
      fill();
      return;
    }
    const loading = showLoading();
    exhausted = false; // items may have been freed since the last look
    await fill();
    if (current !== loading) return; // an undo or a failed submit took the stage meanwhile
    if (upcoming.length) {
      show(upcoming.shift());
      fill();
    } else if (exhausted) {
      showDone();
    } else {
      const retry = document.createElement("div");
      retry.className = "label-loading";
      retry.dataset.kind = "done";
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = "recheck";
      button.textContent = "Try again";
      retry.append("The next item could not be loaded. ", button);
      show(retry);
    }
  }

  // Show an item whose answer did not reach the server again, in front of the one that replaced it.
  function putBack(el) {
    if (isItem(current)) {
      current.dataset.spentMs = String(clockRead());
      shelf.prepend(current);
      upcoming.unshift(current);
    }
    show(el);
  }

  // Skipping with a reason: a small form under the buttons; the skip keys still skip without one.
  function openSkipForm() {
    if (!skipForm || !isItem(current)) return;
    skipForm.hidden = false;
    reasonButton.setAttribute("aria-expanded", "true");
    skipInput.focus();
  }

  function closeSkipForm() {
    if (!skipForm || skipForm.hidden) return;
    skipForm.hidden = true;
    skipInput.value = "";
    reasonButton.setAttribute("aria-expanded", "false");
  }

  function answer(button, skip, reason = "") {
    const el = current;
    if (!isItem(el) || undoing || !button) return;
    const lease = el.dataset.lease;
    const itemId = el.dataset.itemId;
    const spent = clockRead();
    el.dataset.spentMs = String(spent);
    const name = skip ? null : button.querySelector(".label-name").textContent;
    const url = skip ? el.dataset.skipUrl : el.dataset.submitUrl;
    const fields = skip
      ? (reason ? [["reason", reason]] : [])
      : [["label_id", button.dataset.labelId], ["time_spent_ms", String(spent)]];
    flash(button);
    busy.add(lease);
    const job = post(url, fields, { keepalive: true })
      .then(async (response) => {
        parse(await response.text());
        note(skip ? `Skipped item ${itemId}` : `Saved “${name}” for item ${itemId}`);
      })
      .catch((error) => {
        showError(`Item ${itemId} was not ${skip ? "skipped" : "saved"}: ${error.message}`);
        // A lease that is gone cannot be answered again; anything else can be retried.
        if (error.status !== 404 && error.status !== 409) putBack(el);
      })
      .finally(() => {
        busy.delete(lease);
        inflight.delete(job);
      });
    inflight.add(job);
    advance();
  }

  async function undo() {
    if (undoing) return;
    undoing = true;
    flash(undoButton);
    try {
      await Promise.allSettled(Array.from(inflight));
      if (pending) await pending;
      // Stay within the expert's active-lease limit of three: the undone item, the current one, one more.
      while (upcoming.length && 1 + (isItem(current) ? 1 : 0) + upcoming.length > 3) {
        const extra = upcoming.pop();
        beacon(extra.dataset.releaseUrl);
        extra.remove();
      }
      const response = await post(undoUrl, []);
      const el = parse(await response.text()).querySelector('[data-kind="item"]');
      if (!el) throw new RequestError("The server did not send the item back.", 500);
      const duplicate = upcoming.findIndex((other) => other.dataset.lease === el.dataset.lease);
      if (duplicate >= 0) upcoming.splice(duplicate, 1)[0].remove();
      if (isItem(current) && current.dataset.lease !== el.dataset.lease) {
        current.dataset.spentMs = String(clockRead());
        shelf.prepend(current);
        upcoming.unshift(current);
      }
      show(el);
      note(`Took back the label of item ${el.dataset.itemId}`);
    } catch (error) {
      showError(`Nothing was undone: ${error.message}`);
    } finally {
      undoing = false;
    }
  }

  async function recheck() {
    exhausted = false;
    doneElement = null;
    await advance();
  }

  function heartbeat() {
    lastBeat = performance.now();
    for (const el of [current, ...upcoming]) {
      if (!isItem(el) || busy.has(el.dataset.lease)) continue;
      post(el.dataset.renewUrl, []).catch((error) => {
        if (error.status !== 404 && error.status !== 409) return; // a network hiccup: the next beat tries again
        if (el === current) {
          showError(`Your reservation of item ${el.dataset.itemId} ended: ${error.message}`);
          advance();
        } else {
          const index = upcoming.indexOf(el);
          if (index >= 0) {
            upcoming.splice(index, 1);
            el.remove();
            fill();
          }
        }
      });
    }
  }

  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || !root.contains(button)) return;
    if (button.classList.contains("label-button")) answer(button, false);
    else if (button.dataset.action === "skip") answer(button, true);
    else if (button.dataset.action === "skip-reason") { openSkipForm(); return; }
    else if (button.dataset.action === "skip-cancel") closeSkipForm();
    else if (button.dataset.action === "undo") undo();
    else if (button.dataset.action === "recheck") recheck();
    else if (button.dataset.action === "dismiss") toast.hidden = true;
    else return;
    button.blur(); // keys keep working, and Space does not press the button again
  });

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (event.target instanceof Element && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const key = event.key;
    const lower = key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && lower === "z") {
      event.preventDefault();
      if (!event.repeat) undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const labelButton = byKey.get(key) || byLowerKey.get(lower);
    let action = null;
    if (labelButton) action = () => answer(labelButton, false);
    else if (skipKeys.has(lower)) action = () => answer(skipButton, true);
    else if (undoKeys.has(lower)) action = undo;
    if (!action) return;
    event.preventDefault();
    if (!event.repeat) action();
  });

  if (skipForm) {
    skipForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const reason = skipInput.value.trim();
      closeSkipForm();
      answer(skipButton, true, reason);
    });
    skipInput.addEventListener("keydown", (event) => {
      if (event.key === "Escape") closeSkipForm();
    });
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      if (clock.since !== null) clock.spent += performance.now() - clock.since;
      clock.since = null;
    } else {
      clock.since = performance.now();
      // Background tabs run timers late: renew now if a beat is due.
      if (performance.now() - lastBeat > heartbeatMs / 2) heartbeat();
    }
  });

  // Closing or leaving the page gives unanswered items back to the queue at once.
  window.addEventListener("pagehide", () => {
    closing = true;
    for (const el of [current, ...upcoming]) {
      if (isItem(el) && !busy.has(el.dataset.lease)) beacon(el.dataset.releaseUrl);
    }
  });
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) window.location.reload(); // back from the cache: its leases were released
  });
  window.addEventListener("resize", () => fitImage(current));

  setInterval(heartbeat, heartbeatMs);
  if (current) show(current);
  if (isItem(current)) fill();
})();
