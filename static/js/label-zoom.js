/* The labeling page's image zoom: click or + / − to zoom, drag or scroll to pan; label keys keep priority. */
(() => {
  "use strict";

  const stage = document.getElementById("label-stage");
  if (!stage) return;

  const STEPS = [1, 2, 4, 8]; // times the size that fits the stage
  const DRAG_PX = 4; // a press that moves less than this is a click

  const frameOf = () => stage.querySelector('[data-kind="item"] .label-zoom');

  function fitted(frame, img) {
    const scale = Math.min(frame.clientWidth / img.naturalWidth, frame.clientHeight / img.naturalHeight);
    return { width: img.naturalWidth * scale, height: img.naturalHeight * scale };
  }

  function describe(frame, step) {
    const item = frame.closest('[data-kind="item"]');
    const state = item && item.querySelector(".label-zoom-state");
    if (state) state.textContent = step === 1 ? "Click the image to zoom" : `Zoom ${step}× · click to fit`;
  }

  // Zoom to ``step``, keeping the point (x, y) of the frame (its centre by default) where it was.
  function zoom(frame, step, x, y) {
    const img = frame.querySelector("img.label-image");
    if (!img || !img.naturalWidth) return;
    const from = Number(frame.dataset.zoom) || 1;
    step = Math.min(STEPS[STEPS.length - 1], Math.max(1, step));
    const px = x === undefined ? frame.clientWidth / 2 : x;
    const py = y === undefined ? frame.clientHeight / 2 : y;
    const box = img.getBoundingClientRect();
    const frameBox = frame.getBoundingClientRect();
    // The fraction of the image under the point before zooming.
    const fx = (px + frameBox.left - box.left) / (box.width || 1);
    const fy = (py + frameBox.top - box.top) / (box.height || 1);
    frame.dataset.zoom = String(step);
    frame.classList.toggle("zoomed", step > 1);
    if (step === 1) {
      img.style.removeProperty("width");
      img.style.removeProperty("height");
    } else {
      const fit = fitted(frame, img);
      img.style.width = `${Math.round(fit.width * step)}px`;
      img.style.height = `${Math.round(fit.height * step)}px`;
      const after = img.getBoundingClientRect();
      frame.scrollLeft += after.left - frameBox.left + fx * after.width - px;
      frame.scrollTop += after.top - frameBox.top + fy * after.height - py;
    }
    const drawn = img.getBoundingClientRect();
    const scale = Math.min(drawn.width / img.naturalWidth, drawn.height / img.naturalHeight) * devicePixelRatio;
    img.classList.toggle("smooth", scale < 1);
    if (from !== step) describe(frame, step);
  }

  function stepBy(frame, direction) {
    const current = STEPS.indexOf(Number(frame.dataset.zoom) || 1);
    const next = STEPS[Math.min(STEPS.length - 1, Math.max(0, current + direction))];
    zoom(frame, next);
  }

  // Drag to pan a zoomed image; a press that does not move is a click, which zooms in or back to fit.
  let press = null;
  stage.addEventListener("pointerdown", (event) => {
    const frame = event.target.closest(".label-zoom");
    if (!frame || event.button !== 0) return;
    press = { frame, x: event.clientX, y: event.clientY, left: frame.scrollLeft, top: frame.scrollTop, moved: false };
  });
  stage.addEventListener("pointermove", (event) => {
    if (!press) return;
    const dx = event.clientX - press.x;
    const dy = event.clientY - press.y;
    if (!press.moved && Math.hypot(dx, dy) < DRAG_PX) return;
    press.moved = true;
    press.frame.classList.add("panning");
    press.frame.scrollLeft = press.left - dx;
    press.frame.scrollTop = press.top - dy;
  });
  const endPress = (event) => {
    if (!press) return;
    const { frame, moved } = press;
    press = null;
    frame.classList.remove("panning");
    if (moved || event.type !== "pointerup") return;
    const box = frame.getBoundingClientRect();
    const zoomed = (Number(frame.dataset.zoom) || 1) > 1;
    zoom(frame, zoomed ? 1 : 2, event.clientX - box.left, event.clientY - box.top);
  };
  stage.addEventListener("pointerup", endPress);
  stage.addEventListener("pointercancel", endPress);

  // Registered after the labeling script's listener: a key a label claims has been handled by then.
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target instanceof Element && event.target.closest("input, textarea, select, [contenteditable]")) return;
    const direction = { "+": 1, "=": 1, "-": -1, _: -1 }[event.key];
    const frame = frameOf();
    if (!direction || !frame) return;
    event.preventDefault();
    stepBy(frame, direction);
  });

  window.addEventListener("resize", () => {
    const frame = frameOf();
    if (frame && Number(frame.dataset.zoom) > 1) zoom(frame, Number(frame.dataset.zoom));
  });
})();
