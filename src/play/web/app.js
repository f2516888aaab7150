// auditrail's web player page: drives asciinema-player (embedded) with its own play/pause, seek bar and
// speed, and puts the session's events on a timeline beside the terminal; a click on an event seeks there.
// Served by `auditrail play --web` (recording and events fetched from the same origin) and inlined by
// `auditrail export` (recording and events in the page itself, opened from file:// with no server).
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("config").textContent);
  var box = document.getElementById("player");
  var playBtn = document.getElementById("play");
  var bar = document.getElementById("seek");
  var clock = document.getElementById("clock");
  var speedSel = document.getElementById("speed");
  var list = document.getElementById("events");
  var problems = document.getElementById("problems");
  var player = null;
  var cast = null;
  var events = [];
  var duration = cfg.duration || 0;
  var playing = false;
  var EPSILON = 0.001;

  function fmt(t) {
    t = Math.max(0, t || 0);
    var h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = Math.floor(t % 60);
    var mm = (h ? String(m).padStart(2, "0") : String(m));
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function say(text) {
    problems.hidden = !text;
    problems.textContent = text || "";
  }

  function create(at, autoPlay) {
    if (player) { player.dispose(); }
    box.textContent = "";
    player = AsciinemaPlayer.create({ data: cast }, box, {
      autoPlay: autoPlay,
      preload: true,
      startAt: at,
      poster: "npt:" + at,
      speed: Number(speedSel.value),
      idleTimeLimit: cfg.idleLimit || undefined,
      fit: false,
      controls: false,
      markers: events.map(function (e) { return [e.t, e.event]; })
    });
    player.addEventListener("playing", function () { playing = true; render(); });
    player.addEventListener("pause", function () { playing = false; render(); });
    player.addEventListener("ended", function () { playing = false; render(); });
    playing = autoPlay;
    if (!autoPlay) { player.seek(at + EPSILON).then(render); }
    render();
  }

  function now() { return player ? player.getCurrentTime() || 0 : 0; }

  function render() {
    var d = (player && player.getDuration()) || duration;
    if (d) { duration = d; bar.max = String(d); }
    if (document.activeElement !== bar) { bar.value = String(now()); }
    clock.textContent = fmt(now()) + " / " + fmt(duration);
    playBtn.textContent = playing ? "Pause" : "Play";
    playBtn.setAttribute("aria-pressed", playing ? "true" : "false");
    var t = now();
    var items = list.children;
    for (var i = 0; i < items.length; i++) {
      items[i].classList.toggle("past", Number(items[i].dataset.t) <= t + 0.05);
    }
    document.body.dataset.time = String(t);
    document.body.dataset.state = playing ? "playing" : "paused";
  }

  // asciinema-player shows the events before the time it seeks to; the screen "at" t also has the events
  // at t (the feed ends with an empty event just after the last, so the end can be seeked to as well).
  function seek(t) {
    t = Math.max(0, Math.min(duration || t, t + EPSILON));
    return player.seek(t).then(render);
  }

  function showEvents() {
    list.textContent = "";
    events.forEach(function (e) {
      var li = document.createElement("li");
      li.dataset.t = String(e.t);
      var b = document.createElement("button");
      b.type = "button";
      b.className = "event";
      b.title = e.code || "";
      var at = document.createElement("span");
      at.className = "at";
      at.textContent = fmt(e.t);
      var text = document.createElement("span");
      text.className = "text";
      text.textContent = e.text;
      b.appendChild(at);
      b.appendChild(text);
      b.addEventListener("click", function () { seek(e.t); });
      li.appendChild(b);
      list.appendChild(li);
    });
    if (!events.length) {
      var li = document.createElement("li");
      li.className = "none";
      li.textContent = "No events for this session (" + (cfg.eventsFile || "<sid>.events.ndjson") + ").";
      list.appendChild(li);
    }
  }

  function start() {
    showEvents();
    if (!/\S/.test(cast || "")) {
      // Nothing playable (the header is unreadable): the problems say why; the player would only throw
      // on an empty recording, so it is not created.
      playBtn.disabled = true;
      bar.disabled = true;
      speedSel.disabled = true;
      document.body.dataset.ready = "true";
      return;
    }
    var at = cfg.at == null ? 0 : cfg.at;
    create(at, false);
    playBtn.addEventListener("click", function () {
      if (playing) { player.pause(); } else { player.play(); }
    });
    bar.addEventListener("change", function () { seek(Number(bar.value)); });
    speedSel.addEventListener("change", function () { create(now(), playing); });
    setInterval(render, 200);
    document.body.dataset.ready = "true";
  }

  function text(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) { throw new Error(url + ": HTTP " + r.status); }
      return r.text();
    });
  }

  if (typeof AsciinemaPlayer === "undefined") {
    say(cfg.notBuilt || "The player script did not load.");
    return;
  }
  if (cfg.cast != null) {
    cast = cfg.cast;
    events = cfg.events || [];
    if (cfg.problems && cfg.problems.length) { say("Problems in the recording: " + cfg.problems.join("; ")); }
    start();
  } else {
    Promise.all([text(cfg.castUrl), text(cfg.eventsUrl)]).then(function (r) {
      cast = r[0];
      events = JSON.parse(r[1]);
      start();
      return text(cfg.problemsUrl).then(function (p) {
        var list = JSON.parse(p);
        if (list.length) { say("Problems in the recording: " + list.join("; ")); }
      });
    }).catch(function (e) { say(String(e)); });
  }
})();
