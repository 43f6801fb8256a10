/* mvfx report: sorting and filtering of tables, no library, nothing fetched.
 *
 * Sorting: a table with class "sortable" whose header cells hold <button class="sort"> is sorted by that column
 * when the button is pressed (mouse, or Enter/Space from the keyboard); pressing again reverses the order. The
 * header cell's aria-sort says the current order. A cell's data-sort attribute, when present, is what is compared.
 *
 * Filtering: an element with data-filters="TABLE_ID" holds <select data-column="N"> (the row's cell N must equal
 * the chosen value; "" lets every row through) and <input data-text> (the row's text must contain it, any case).
 * Its [data-status] element (a polite live region) says how many rows are shown.
 */
(function () {
  "use strict";

  function cellText(row, index) {
    var cell = row.cells[index];
    if (!cell) { return ""; }
    var sortKey = cell.getAttribute("data-sort");
    return sortKey !== null ? sortKey : cell.textContent.trim();
  }

  function compare(a, b, numeric) {
    if (numeric) {
      var x = parseFloat(a), y = parseFloat(b);
      var xn = isNaN(x), yn = isNaN(y);
      if (xn || yn) { return xn === yn ? 0 : (xn ? 1 : -1); }  /* blanks and '-' last */
      return x - y;
    }
    return a.localeCompare(b, undefined, { numeric: true, sensitivity: "base" });
  }

  function makeSortable(table) {
    if (!table.tHead || !table.tBodies.length) { return; }
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      var button = th.querySelector("button.sort");
      if (!button) { return; }
      var numeric = button.getAttribute("data-type") === "number";
      button.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var order = compare(cellText(r1, index), cellText(r2, index), numeric);
          return ascending ? order : -order;
        });
        var fragment = document.createDocumentFragment();
        rows.forEach(function (row) { fragment.appendChild(row); });
        body.appendChild(fragment);
      });
    });
  }

  function makeFilter(box) {
    var table = document.getElementById(box.getAttribute("data-filters"));
    if (!table || !table.tBodies.length) { return; }
    var selects = box.querySelectorAll("select[data-column]");
    var text = box.querySelector("[data-text]");
    var status = box.querySelector("[data-status]");
    var noun = status ? (status.getAttribute("data-noun") || "rows") : "rows";

    function apply() {
      var rows = table.tBodies[0].rows;
      var needle = text ? text.value.trim().toLowerCase() : "";
      var shown = 0;
      Array.prototype.forEach.call(rows, function (row) {
        var keep = true;
        Array.prototype.forEach.call(selects, function (select) {
          var wanted = select.value;
          if (wanted !== "" && cellText(row, parseInt(select.getAttribute("data-column"), 10)) !== wanted) { keep = false; }
        });
        if (keep && needle && row.textContent.toLowerCase().indexOf(needle) === -1) { keep = false; }
        row.hidden = !keep;
        if (keep) { shown += 1; }
      });
      if (status) { status.textContent = shown + " of " + rows.length + " " + noun + " shown"; }
    }

    Array.prototype.forEach.call(selects, function (select) { select.addEventListener("change", apply); });
    if (text) { text.addEventListener("input", apply); }
    apply();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  Array.prototype.forEach.call(document.querySelectorAll("[data-filters]"), makeFilter);
}());
