/* Pacifica Ingest pages: live job progress, and browser uploads over tus. */
"use strict";

(function () {
  // ---- live progress: rows and summaries carrying data-job of unfinished jobs ----------
  function pollJobs() {
    var running = document.querySelectorAll('[data-job][data-complete="false"]');
    running.forEach(function (element) {
      fetch("/get_state?job_id=" + encodeURIComponent(element.dataset.job),
            {credentials: "same-origin", cache: "no-store"})
        .then(function (reply) { return reply.ok ? reply.json() : null; })
        .then(function (state) {
          if (!state) { return; }
          var percent = state.complete ? 100 : parseFloat(state.task_percent);
          element.querySelector(".state").textContent = state.state;
          element.querySelector(".task").textContent = state.task;
          element.querySelector("progress").value = percent;
          element.querySelector(".pct").textContent = percent.toFixed(1) + " %";
          if (state.complete || state.state === "FAILED") {
            element.dataset.complete = "true";
            element.classList.remove("running");
            element.classList.add(state.state === "FAILED" ? "failed" : "done");
            if (element.dataset.reload) { window.location.reload(); }
          }
        })
        .catch(function () { /* try again on the next tick */ });
    });
  }
  if (document.querySelector('[data-job][data-complete="false"]')) {
    window.setInterval(pollJobs, 1000);
  }

  // ---- the upload page ---------------------------------------------------------------
  var form = document.getElementById("upload");
  if (!form) { return; }
  var chosen = [];  // {file, path}
  var encoder = new TextEncoder();

  function say(text) { document.getElementById("message").textContent = text; }

  function addFiles(list) {
    Array.prototype.forEach.call(list, function (file) {
      var path = file.webkitRelativePath || file.name;
      chosen = chosen.filter(function (item) { return item.path !== path; });
      chosen.push({file: file, path: path});
    });
    showChosen();
  }

  function showChosen() {
    var body = document.querySelector("#per-file tbody");
    body.textContent = "";
    chosen.forEach(function (item, index) {
      var row = body.insertRow();
      row.insertCell().textContent = item.path;
      row.insertCell().textContent = item.file.size + " B";
      var bar = document.createElement("progress");
      bar.max = 100; bar.value = 0; bar.id = "file-" + index;
      bar.setAttribute("aria-label", item.path + " progress");
      row.insertCell().appendChild(bar);
    });
    say(chosen.length + " file(s) chosen");
  }

  function walk(entry, prefix) {  // a dropped folder, read recursively
    return new Promise(function (resolve) {
      if (entry.isFile) {
        entry.file(function (file) { resolve([{file: file, path: prefix + file.name}]); },
                   function () { resolve([]); });
        return;
      }
      var reader = entry.createReader(), found = [];
      (function more() {
        reader.readEntries(function (entries) {
          if (!entries.length) {
            Promise.all(found).then(function (lists) { resolve([].concat.apply([], lists)); });
            return;
          }
          entries.forEach(function (child) { found.push(walk(child, prefix + entry.name + "/")); });
          more();
        }, function () { resolve([]); });
      })();
    });
  }

  document.getElementById("files").addEventListener("change", function (event) {
    addFiles(event.target.files);
  });
  document.getElementById("folder").addEventListener("change", function (event) {
    addFiles(event.target.files);
  });
  var drop = document.getElementById("drop");
  drop.addEventListener("dragover", function (event) {
    event.preventDefault(); drop.classList.add("over");
  });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    event.preventDefault(); drop.classList.remove("over");
    var items = Array.prototype.slice.call(event.dataTransfer.items || []);
    Promise.all(items.map(function (item) {
      var entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
      return entry ? walk(entry, "") : Promise.resolve([]);
    })).then(function (lists) {
      [].concat.apply([], lists).forEach(function (item) {
        chosen = chosen.filter(function (old) { return old.path !== item.path; });
        chosen.push(item);
      });
      showChosen();
    });
  });
  drop.addEventListener("keydown", function (event) {
    if (event.key === "Enter" || event.key === " ") { document.getElementById("files").click(); }
  });

  // ---- the bundle: ustar (pax for long names), data/<path> members + metadata.txt -----
  function octal(value, width) {
    var text = value.toString(8);
    while (text.length < width - 1) { text = "0" + text; }
    return text + "\0";
  }
  function put(block, offset, text, width) {
    var bytes = typeof text === "string" ? encoder.encode(text) : text;
    block.set(bytes.subarray(0, width), offset);
  }
  function header(name, size, type) {
    var block = new Uint8Array(512);
    put(block, 0, name, 100);
    put(block, 100, "0000644\0", 8);
    put(block, 108, "0000000\0", 8);
    put(block, 116, "0000000\0", 8);
    put(block, 124, octal(size, 12), 12);
    put(block, 136, octal(Math.floor(Date.now() / 1000), 12), 12);
    put(block, 148, "        ", 8);
    put(block, 156, type, 1);
    put(block, 257, "ustar\0", 6);
    put(block, 263, "00", 2);
    var sum = 0;
    for (var i = 0; i < 512; i++) { sum += block[i]; }
    put(block, 148, octal(sum, 7) + " ", 8);
    return block;
  }
  function padding(size) { return new Uint8Array((512 - size % 512) % 512); }
  function member(parts, name, size) {  // header(s) for one member; returns its data offset
    var bytes = encoder.encode(name);
    if (bytes.length > 99) {  // a pax header carries the long name
      var record = " path=" + name + "\n", length = encoder.encode(record).length;
      var total = length + String(length).length;
      if (String(total).length !== String(length).length) { total += 1; }
      var pax = encoder.encode(total + record);
      parts.push(header("PaxHeader/long", pax.length, "x"), pax, padding(pax.length));
      name = "long-name";
    }
    parts.push(header(name, size, "0"));
  }
  function hex(buffer) {
    return Array.prototype.map.call(new Uint8Array(buffer), function (byte) {
      return ("0" + byte.toString(16)).slice(-2);
    }).join("");
  }

  function metadata(hashes) {
    var value = function (id) { return document.getElementById(id).value.trim(); };
    var entries = [
      {destinationTable: "Transactions.submitter", value: value("submitter")},
      {destinationTable: "Transactions.project", value: value("project")},
      {destinationTable: "Transactions.instrument", value: value("instrument")}];
    value("keyvalues").split("\n").forEach(function (line) {
      var at = line.indexOf("=");
      if (at > 0) {
        entries.push({destinationTable: "TransactionKeyValue", key: line.slice(0, at).trim(),
                      value: line.slice(at + 1).trim()});
      }
    });
    chosen.forEach(function (item, index) {
      var slash = item.path.lastIndexOf("/");
      var stamp = new Date(item.file.lastModified || Date.now()).toUTCString();
      entries.push({destinationTable: "Files", name: item.path.slice(slash + 1),
                    subdir: "data/" + (slash > 0 ? item.path.slice(0, slash) : ""),
                    size: item.file.size, hashtype: "sha1", hashsum: hashes[index],
                    mimetype: item.file.type || "application/octet-stream",
                    ctime: stamp, mtime: stamp});
    });
    return encoder.encode(JSON.stringify(entries));
  }

  function bundle(hashes) {  // {blob, starts: data offset of each file}
    var parts = [], starts = [], offset = 0;
    var size = function (part) { return part.size !== undefined ? part.size : part.length; };
    chosen.forEach(function (item) {
      var before = parts.length;
      member(parts, "data/" + item.path, item.file.size);
      for (var i = before; i < parts.length; i++) { offset += size(parts[i]); }
      starts.push(offset);
      parts.push(item.file, padding(item.file.size));
      offset += item.file.size + padding(item.file.size).length;
    });
    var text = metadata(hashes);
    parts.push(header("metadata.txt", text.length, "0"), text, padding(text.length),
               new Uint8Array(1024));
    return {blob: new Blob(parts, {type: "application/x-tar"}), starts: starts};
  }

  function fingerprint() {  // the same files and fields resume the same upload after a reload
    var text = chosen.map(function (item) {
      return item.path + ":" + item.file.size + ":" + item.file.lastModified;
    }).join("|") + "|" + ["submitter", "project", "instrument", "keyvalues"].map(function (id) {
      return document.getElementById(id).value;
    }).join("|");
    return crypto.subtle.digest("SHA-256", encoder.encode(text)).then(function (digest) {
      return "pacifica-ingest-" + hex(digest);
    });
  }

  function showProgress(sent, total, starts, started) {
    var percent = total ? 100 * sent / total : 0;
    document.getElementById("total").value = percent;
    var seconds = (Date.now() - started.time) / 1000;
    var speed = seconds > 0 ? (sent - started.bytes) / seconds : 0;
    var eta = speed > 0 ? Math.round((total - sent) / speed) : null;
    document.getElementById("total-text").textContent = percent.toFixed(1) + " % of " +
      total + " B, " + (speed / 1048576).toFixed(2) + " MiB/s" +
      (eta === null ? "" : ", about " + eta + " s left");
    chosen.forEach(function (item, index) {
      var done = item.file.size ? (sent - starts[index]) / item.file.size : (sent > starts[index] ? 1 : 0);
      document.getElementById("file-" + index).value = Math.max(0, Math.min(1, done)) * 100;
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!chosen.length) { say("Choose or drop the files to upload first."); return; }
    if (!window.crypto || !crypto.subtle) {
      say("This page needs a secure connection (https or localhost) to hash the files.");
      return;
    }
    var missing = ["submitter", "project", "instrument"].filter(function (id) {
      return !document.getElementById(id).value.trim();
    });
    if (missing.length) { say("Fill in: " + missing.join(", ")); return; }
    document.getElementById("start").disabled = true;
    say("Hashing " + chosen.length + " file(s)…");
    Promise.all(chosen.map(function (item) {
      return item.file.arrayBuffer().then(function (bytes) {
        return crypto.subtle.digest("SHA-1", bytes);
      }).then(hex);
    })).then(function (hashes) {
      var built = bundle(hashes), jobId = null;
      return fingerprint().then(function (print) {
        var started = {time: Date.now(), bytes: 0};
        var upload = new tus.Upload(built.blob, {
          endpoint: "/files/",
          chunkSize: 4 * 1024 * 1024,
          retryDelays: [0, 1000, 3000, 5000, 10000],
          metadata: {filename: "bundle.tar", filetype: "application/x-tar"},
          fingerprint: function () { return Promise.resolve(print); },
          removeFingerprintOnSuccess: true,
          onProgress: function (sent, total) {
            showProgress(sent, total, built.starts, started);
          },
          onAfterResponse: function (request, response) {
            var header = response.getHeader("Ingest-Job-Id");
            if (header) { jobId = header; }
          },
          onError: function (error) {
            say("The upload failed: " + error.message);
            document.getElementById("start").disabled = false;
          },
          onSuccess: function () {
            say("Uploaded: job " + jobId);
            if (jobId) { window.location.href = "/jobs/" + jobId; }
          }
        });
        return upload.findPreviousUploads().then(function (previous) {
          if (previous.length) {
            upload.resumeFromPreviousUpload(previous[0]);
            say("Resuming the earlier upload of these files…");
          } else {
            say("Uploading…");
          }
          upload.start();
        });
      });
    }).catch(function (error) {
      say("Could not prepare the bundle: " + error.message);
      document.getElementById("start").disabled = false;
    });
  });
})();
