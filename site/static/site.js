// cifarzoo leaderboard: sortable tables and the index filters. Plain JS, no library, works from file://.
"use strict";

// Cells carry data-sort: a number for numeric columns, lower-case text otherwise, "" when missing.
// Missing values sort last in both directions; equal values keep their previous order (stable sort).
function sortTable(table, column, ascending) {
  const header = table.tHead.rows[0].cells[column];
  const numeric = header.dataset.type === "num";
  const body = table.tBodies[0];
  const key = (row) => {
    const cell = row.cells[column];
    return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim().toLowerCase();
  };
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === "" || y === "") return (x === "") - (y === "");
    const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
    return ascending ? order : -order;
  });
  rows.forEach((row) => body.appendChild(row));
  Array.from(table.tHead.rows[0].cells).forEach((th) => th.removeAttribute("aria-sort"));
  header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
}

document.querySelectorAll("table.sortable").forEach((table) => {
  Array.from(table.tHead.rows[0].cells).forEach((th, column) => {
    const button = th.querySelector("button");
    if (!button) return;
    // first click sorts ascending, the next one descending, and so on
    button.addEventListener("click", () => sortTable(table, column, th.getAttribute("aria-sort") !== "ascending"));
  });
});

const board = document.getElementById("board");
if (board) {
  const text = document.getElementById("filter-text");
  const selects = Array.from(document.querySelectorAll("select[data-filter]"));
  const count = document.getElementById("row-count");
  const none = document.getElementById("no-rows");
  const rows = Array.from(board.tBodies[0].rows);

  function applyFilters() {
    const terms = text.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    rows.forEach((row) => {
      const haystack = row.textContent.toLowerCase();
      const visible = terms.every((t) => haystack.includes(t))
        && selects.every((s) => !s.value || row.dataset[s.dataset.filter] === s.value);
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    count.textContent = `${shown} of ${rows.length} rows`;
    none.hidden = shown > 0;
  }

  text.addEventListener("input", applyFilters);
  selects.forEach((s) => s.addEventListener("change", applyFilters));
  applyFilters();  // a browser may restore form values on reload
}
