/* The workflow editor: each trigger and step shows only the fields its kind uses.
   The map comes from the server (the kind select's data-fields attribute: kind -> field names);
   the server's validation stays the judge, this only hides what a kind does not read.
   One delegated listener, so rows added with "Add another" (clones of the empty form) work too. */
(function () {
  "use strict";

  function update(select) {
    var fields = JSON.parse(select.getAttribute("data-fields") || "{}");
    var all = JSON.parse(select.getAttribute("data-all-fields") || "[]");
    var shown = fields[select.value] || [];
    var item = select.closest(".inline-related") || select.closest("tr") || document;
    all.forEach(function (name) {
      item.querySelectorAll(".field-" + name).forEach(function (element) {
        var hidden = shown.indexOf(name) === -1;
        element.hidden = hidden;
        element.style.display = hidden ? "none" : "";
      });
    });
  }

  function updateAll(root) {
    root.querySelectorAll("select[data-fields]").forEach(update);
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("select[data-fields]")) { update(event.target); }
  });
  document.addEventListener("DOMContentLoaded", function () { updateAll(document); });
  document.addEventListener("formset:added", function (event) { updateAll(event.target); });
})();
