// Layer page filters: search by unit number or label, filter by family, branch, colour category and
// polysemanticity score, sort by unit, selectivity or polysemanticity. Local file, no dependencies,
// works from file://. Without it the page still lists every unit.
(function () {
  "use strict";
  var grid = document.getElementById("units");
  var form = document.getElementById("filters");
  if (!grid || !form) { return; }
  var cells = Array.prototype.slice.call(grid.querySelectorAll("a.unit"));
  var count = document.getElementById("shown");
  function num(cell, key) { var v = parseFloat(cell.getAttribute("data-" + key)); return isNaN(v) ? -1 : v; }
  function update() {
    var query = form.elements.q.value.trim().toLowerCase();
    var family = form.elements.family.value, branch = form.elements.branch.value;
    var category = form.elements.category.value;
    var minScore = parseFloat(form.elements.minscore.value);
    var shown = 0;
    cells.forEach(function (cell) {
      var ok = true;
      if (query) {
        ok = cell.getAttribute("data-unit") === query ||
             (cell.getAttribute("data-label") || "").toLowerCase().indexOf(query) >= 0;
      }
      if (ok && family === "yes") { ok = cell.getAttribute("data-family") !== ""; }
      if (ok && family === "no") { ok = cell.getAttribute("data-family") === ""; }
      if (ok && branch) { ok = cell.getAttribute("data-branch") === branch; }
      if (ok && category) { ok = cell.getAttribute("data-category") === category; }
      if (ok && !isNaN(minScore)) { ok = num(cell, "score") >= minScore; }
      cell.style.display = ok ? "" : "none";  // not .hidden: the grid CSS sets display
      if (ok) { shown += 1; }
    });
    var key = form.elements.sort.value;
    var ordered = cells.slice().sort(function (a, b) {
      return key === "unit" ? num(a, "unit") - num(b, "unit") : num(b, key) - num(a, key);
    });
    // move nodes only when the order changes: a "change" event fires when focus leaves an input,
    // and moving the cells then would swallow the click that moved the focus
    var current = Array.prototype.slice.call(grid.children);
    var same = ordered.every(function (cell, i) { return current[i] === cell; });
    if (!same) { ordered.forEach(function (cell) { grid.appendChild(cell); }); }
    if (count) { count.textContent = shown + " shown"; }
  }
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  form.addEventListener("submit", function (event) { event.preventDefault(); update(); });
  update();
})();
