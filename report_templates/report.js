// netaudit report: filters, sorting and search over the rows the page already holds.
// Progressive enhancement: without this script every table is there in full. The script only reads the
// page and hides, shows or reorders its elements; it never parses text as markup, so
// nothing a scanned server said can become code. The CSP lets only this exact script run (by its hash).
(function () {
  "use strict";
  var bar = document.getElementById("filters");
  if (!bar) { return; }
  var selects = Array.prototype.slice.call(bar.querySelectorAll("select[data-facet]"));
  var search = document.getElementById("filter-text");
  var count = document.getElementById("filter-count");
  var items = Array.prototype.slice.call(document.querySelectorAll("[data-severity]"));
  var texts = null;  // lower-cased text of each item, read on the first search only
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});

  function matches(el, wanted, query, index) {
    for (var i = 0; i < wanted.length; i++) {
      var facet = wanted[i][0], value = wanted[i][1], have = el.getAttribute("data-" + facet) || "";
      if (facet === "vantage" ? (" " + have + " ").indexOf(" " + value + " ") < 0 : have !== value) { return false; }
    }
    if (query) {
      if (texts === null) { texts = items.map(function (item) { return item.textContent.toLowerCase(); }); }
      return texts[index].indexOf(query) >= 0;
    }
    return true;
  }

  function apply() {
    var wanted = selects.filter(function (s) { return s.value; }).map(function (s) {
      return [s.getAttribute("data-facet"), s.value];
    });
    var query = search.value.trim().toLowerCase();
    var shown = 0;
    items.forEach(function (el, index) {
      var ok = matches(el, wanted, query, index);
      el.hidden = !ok;
      if (ok) { shown++; }
    });
    count.textContent = (wanted.length || query) ? shown + " of " + items.length + " rows and cards match" : "";
  }

  var timer = null;
  selects.forEach(function (s) { s.addEventListener("change", apply); });
  search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 120); });
  search.addEventListener("keydown", function (event) {
    if (event.key === "Enter") { clearTimeout(timer); apply(); }
  });
  document.getElementById("filter-reset").addEventListener("click", function () {
    selects.forEach(function (s) { s.value = ""; });
    search.value = "";
    apply();
  });

  // A link to a row that a filter hides, or that sits in a closed <details>: clear the filters, open it.
  function reveal() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (!target) { return; }
    for (var el = target; el; el = el.parentElement) {
      if (el.hidden && el.hasAttribute("data-severity")) {
        selects.forEach(function (s) { s.value = ""; });
        search.value = "";
        apply();
      }
      if (el.tagName === "DETAILS") { el.open = true; }
    }
    target.scrollIntoView({block: "center"});
    target.classList.add("target");
  }
  window.addEventListener("hashchange", reveal);

  // Every table sorts by any column: a click on its heading, again for the other direction. The heading's
  // text goes into a button, so Tab reaches it and Enter or Space sorts, and a screen reader says what it does.
  function key(cell) {
    return cell ? (cell.getAttribute("data-sort") || cell.textContent.trim()) : "";
  }
  Array.prototype.forEach.call(document.querySelectorAll("table"), function (table) {
    var head = table.tHead, body = table.tBodies[0];
    if (!head || !body) { return; }
    Array.prototype.forEach.call(head.rows[0].cells, function (th, column) {
      var button = document.createElement("button");
      button.type = "button";
      while (th.firstChild) { button.appendChild(th.firstChild); }
      th.appendChild(button);
      th.classList.add("sortable");
      th.setAttribute("aria-sort", "none");
      function sort() {
        var up = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(head.rows[0].cells, function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", up ? "ascending" : "descending");
        var rows = Array.prototype.map.call(body.rows, function (row) { return [key(row.cells[column]), row]; });
        rows.sort(function (a, b) { return up ? collator.compare(a[0], b[0]) : collator.compare(b[0], a[0]); });
        var fragment = document.createDocumentFragment();
        rows.forEach(function (pair) { fragment.appendChild(pair[1]); });
        body.appendChild(fragment);
      }
      button.addEventListener("click", sort);
    });
  });

  bar.hidden = false;
  document.documentElement.classList.add("enhanced");
  if (location.hash) { reveal(); }
}());
