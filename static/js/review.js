/* The review page: a label's key resolves the shown item, J/K move through the list, errors show in the status line. */
(() => {
  "use strict";

  const root = document.getElementById("review");
  if (!root) return;
  const panel = document.getElementById("review-panel");

  const rows = () => Array.from(document.querySelectorAll("#review-list li"));
  const shownId = () => {
    const item = panel.querySelector("[data-kind=review-item]");
    return item ? item.dataset.itemId : null;
  };
  const status = () => document.getElementById("review-status");

  // The list marks the item the panel shows, whichever request put it there.
  function markCurrent() {
    const id = shownId();
    for (const row of rows()) {
      if (row.dataset.itemId === id) {
        row.setAttribute("aria-current", "true");
        row.scrollIntoView({ block: "nearest" });
      } else {
        row.removeAttribute("aria-current");
      }
    }
    if (id) {
      const url = new URL(window.location.href);
      url.searchParams.set("item", id);
      window.history.replaceState(null, "", url);
    }
  }

  function move(step) {
    const list = rows();
    if (!list.length) return;
    const at = list.findIndex((row) => row.dataset.itemId === shownId());
    const next = list[Math.min(list.length - 1, Math.max(0, at + step))];
    if (next && next.dataset.itemId !== shownId()) next.querySelector("a").click();
  }

  // Requests refused with a reason (4xx) show it instead of leaving the page unchanged.
  document.body.addEventListener("htmx:beforeSwap", (event) => {
    const code = event.detail.xhr.status;
    if (code >= 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
      event.detail.target = status();
      if (code >= 500) {
        event.detail.serverResponse = "<p class=\"review-error\">The server could not do this. Try again in a moment.</p>";
      }
    }
  });
  document.body.addEventListener("htmx:sendError", () => {
    status().textContent = "The server could not be reached. Check the connection and try again.";
  });
  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.detail.target === panel) markCurrent();
  });

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    if (target.closest && target.closest("input, select, textarea, [contenteditable]")) return;
    const key = event.key;
    const buttons = Array.from(panel.querySelectorAll(".resolve-button[data-key]"));
    const button = buttons.find((b) => b.dataset.key && b.dataset.key === key)
      || buttons.find((b) => b.dataset.key && b.dataset.key.toLowerCase() === key.toLowerCase());
    if (button) {
      event.preventDefault();
      button.classList.add("pressed");
      button.click();
      return;
    }
    if (key === "j" || key === "ArrowDown") {
      event.preventDefault();
      move(1);
    } else if (key === "k" || key === "ArrowUp") {
      event.preventDefault();
      move(-1);
    }
  });

  markCurrent();
})();
