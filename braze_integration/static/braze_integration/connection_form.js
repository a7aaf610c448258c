// Connect screen: show the Custom URL box only when "Custom URL" is chosen as the instance.
(function () {
  "use strict";
  function setUp() {
    var choice = document.getElementById("id_instance");
    var row = document.querySelector(".form-row.field-instance_url, .field-instance_url");
    if (!choice || !row) { return; }
    function toggle() { row.style.display = choice.value === "custom" ? "" : "none"; }
    choice.addEventListener("change", toggle);
    toggle();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", setUp); } else { setUp(); }
})();
