/* The settings page: a merge moves annotations for good, so it asks first. */
(() => {
  "use strict";

  for (const form of document.querySelectorAll("form.label-editor-form")) {
    form.addEventListener("submit", (event) => {
      const button = event.submitter;
      if (!button || button.value !== "merge") return;
      const select = form.querySelector("select[name=into]");
      const into = select ? select.options[select.selectedIndex].text : "";
      const message = `Merge “${form.dataset.labelName}” into “${into}”? Its annotations move there; this cannot be undone.`;
      if (!window.confirm(message)) event.preventDefault();
    });
  }
})();
