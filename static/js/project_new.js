/* The new-project page: "Add a label" appends a row from the template, in the palette's next unused colour. */
(() => {
  "use strict";

  const list = document.getElementById("label-rows");
  const template = document.getElementById("label-row-template");
  const add = document.getElementById("label-row-add");
  const total = document.querySelector("input[name=labels-TOTAL_FORMS]");
  const max = document.querySelector("input[name=labels-MAX_NUM_FORMS]");
  if (!list || !template || !add || !total) return;
  const palette = (list.dataset.palette || "").split(",").filter(Boolean);

  function nextColor() {
    const used = new Set(Array.from(list.querySelectorAll("input[type=color]"), (input) => input.value.toLowerCase()));
    return palette.find((color) => !used.has(color)) || palette[used.size % palette.length] || "#4e79a7";
  }

  add.addEventListener("click", () => {
    const index = Number(total.value);
    if (max && index >= Number(max.value)) return;
    const html = template.innerHTML.replaceAll("__prefix__", String(index));
    const holder = document.createElement("ol");
    holder.innerHTML = html;
    const row = holder.firstElementChild;
    row.querySelector("input[type=color]").value = nextColor();
    list.appendChild(row);
    total.value = String(index + 1);
    row.querySelector("input[type=text]").focus();
  });
})();
