"use strict";
// The playground's Run, streamed: the form goes to the stream route once per column, and each
// answer is written in as its pieces arrive (server-sent events: piece, then done or error).
// Without this script the form posts and the page comes back with the whole answers.
(function () {
  var form = document.getElementById("playground");
  if (!form || !window.fetch || !window.ReadableStream || !window.TextDecoder) {
    return;
  }
  form.addEventListener("submit", function (event) {
    var button = event.submitter;
    if (!button || button.value !== "run") {
      return;
    }
    event.preventDefault();
    var problem = document.getElementById("play-problem");
    if (problem) {
      problem.remove();
    }
    var sides = ["this"];
    if (form.elements.namedItem("other").value) {
      sides.push("other");
    }
    document.getElementById("side-other").hidden = sides.length < 2;
    button.disabled = true;
    Promise.all(sides.map(run)).finally(function () {
      button.disabled = false;
    });
  });

  function parts(side) {
    return {
      label: document.querySelector("#side-" + side + " .label"),
      answer: document.getElementById("answer-" + side),
      figures: document.getElementById("figures-" + side),
    };
  }

  async function run(side) {
    var box = parts(side);
    box.answer.textContent = "";
    box.answer.classList.remove("error");
    box.answer.removeAttribute("role");
    box.figures.textContent = "waiting for the first token…";
    var body = new URLSearchParams(new FormData(form));
    body.set("side", side);
    try {
      // Not form.dataset: the form's own "dataset" field shadows it.
      var response = await fetch(form.getAttribute("data-stream"), {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { accept: "text/event-stream" },
      });
      if (!response.ok) {
        fail(box, await response.text());
        return;
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      for (;;) {
        var chunk = await reader.read();
        if (chunk.done) {
          break;
        }
        buffer += decoder.decode(chunk.value, { stream: true });
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end), box);
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      fail(box, "the request failed: " + error.message);
    }
  }

  function handle(block, box) {
    var name = "message";
    var data = "";
    block.split("\n").forEach(function (line) {
      if (line.startsWith("event: ")) {
        name = line.slice(7);
      } else if (line.startsWith("data: ")) {
        data += line.slice(6);
      }
    });
    var value = JSON.parse(data);
    if (name === "piece") {
      box.answer.textContent += value;
      box.figures.textContent = "streaming…";
    } else if (name === "done") {
      box.label.textContent = value.label;
      box.answer.textContent = value.output;
      box.figures.textContent = value.figures;
    } else if (name === "error") {
      fail(box, value);
    }
  }

  function fail(box, message) {
    box.answer.textContent = message;
    box.answer.classList.add("error");
    box.answer.setAttribute("role", "alert");
    box.figures.textContent = "";
  }
})();
