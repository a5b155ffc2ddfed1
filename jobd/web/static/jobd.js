// jobd dashboard: live refresh of each page's live part, the job page's event view, and small
// conveniences (select all, confirmations). Every page works without it; nothing here builds
// HTML from data: event data is set as text.
(function () {
  "use strict";

  var live = document.getElementById("live");
  var toggle = document.getElementById("live-toggle");
  var paused = window.localStorage && window.localStorage.getItem("jobd.live") === "off";

  function busy() {
    // Do not replace what the user is working with: a selection, a focused field.
    if (!live) return true;
    if (live.querySelector("input[type=checkbox]:checked")) return true;
    var active = document.activeElement;
    return !!(active && live.contains(active) && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(active.tagName));
  }

  function refresh() {
    if (paused || document.hidden || busy()) return;
    fetch(window.location.href, { headers: { "X-Jobd-Fragment": "1" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok || response.headers.get("X-Jobd-Fragment") !== "1") return null;
        return response.text();
      })
      .then(function (html) {
        if (html !== null && html !== undefined && !busy()) {
          live.innerHTML = html; // the server's own escaped rendering of this page's live part
          wire(live);
        }
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function showToggle() {
    if (!toggle) return;
    toggle.hidden = false;
    toggle.setAttribute("aria-pressed", paused ? "false" : "true");
    toggle.querySelector(".live-label").textContent = paused ? "Paused" : "Live";
    toggle.title = paused ? "Resume the live refresh" : "Pause the live refresh";
  }

  if (live && live.dataset.refresh) {
    window.setInterval(refresh, parseInt(live.dataset.refresh, 10) || 5000);
    showToggle();
    if (toggle) {
      toggle.addEventListener("click", function () {
        paused = !paused;
        if (window.localStorage) window.localStorage.setItem("jobd.live", paused ? "off" : "on");
        showToggle();
        if (!paused) refresh();
      });
    }
  }

  function wire(root) {
    root.querySelectorAll("[data-select-all]").forEach(function (box) {
      box.hidden = false;
      box.addEventListener("change", function () {
        var table = box.closest("table");
        table.querySelectorAll("tbody input[type=checkbox]").forEach(function (other) {
          other.checked = box.checked;
        });
      });
    });
  }
  wire(document);

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });

  // -- the job page's events -------------------------------------------------------------
  var events = document.getElementById("events");
  if (!events) return;
  var table = events.querySelector("table");
  var body = table.querySelector("tbody");
  var state = document.getElementById("events-state");
  var ends = { succeeded: true, failed: true, aborted: true };

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
  }

  function follow() {
    table.hidden = false;
    state.textContent = "live";
    var source = new EventSource(events.dataset.src);
    source.onmessage = function (message) {
      var item;
      try { item = JSON.parse(message.data); } catch (error) { return; }
      var row = document.createElement("tr");
      cell(row, message.lastEventId.replace(/^0+(?=\d)/, ""), "muted");
      cell(row, item.event, "mono");
      cell(row, item.data === null || item.data === undefined ? "" : JSON.stringify(item.data));
      body.appendChild(row);
      if (ends[item.event]) {
        source.close();
        state.textContent = "ended: " + item.event;
      }
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) state.textContent = "stream closed";
    };
  }

  if (events.dataset.follow) {
    follow();
  } else {
    var start = events.querySelector("[data-follow-button]");
    if (start) {
      start.hidden = false;
      start.addEventListener("click", function () {
        start.parentNode.hidden = true;
        follow();
      });
    }
  }
})();
