// dsh portal: resumable uploads into Arrivals with tus-js-client. Each picked file gets a
// progress bar; a dropped connection is retried and resumes from the offset the server
// kept; a file picked again after a reload resumes from where it stopped.
(function () {
  'use strict';
  var input = document.getElementById('file');
  var list = document.getElementById('uploads');
  if (!input || !list || !window.tus) { return; }
  var csrf = input.getAttribute('data-csrf');
  var endpoint = input.getAttribute('data-endpoint');

  function row(file) {
    var li = document.createElement('li');
    var label = document.createElement('span');
    label.textContent = file.name;
    var bar = document.createElement('progress');
    bar.max = 100; bar.value = 0;
    bar.setAttribute('aria-label', 'Upload of ' + file.name);
    var status = document.createElement('span');
    status.className = 'status';
    status.setAttribute('data-file', file.name);
    li.appendChild(label); li.appendChild(document.createElement('br'));
    li.appendChild(bar); li.appendChild(document.createElement('br'));
    li.appendChild(status);
    list.appendChild(li);
    return { li: li, bar: bar, status: status };
  }

  function start(file) {
    var r = row(file);
    var resumedFrom = -1;
    var upload = new tus.Upload(file, {
      endpoint: endpoint,
      chunkSize: 16 * 1024 * 1024,
      retryDelays: [0, 1000, 2000, 4000, 8000, 15000, 30000, 60000],
      metadata: { filename: file.name },
      headers: { 'X-CSRF-Token': csrf },
      removeFingerprintOnSuccess: true,
      onAfterResponse: function (req, res) {
        // A HEAD answers where the server stopped: the transfer goes on from there.
        if (req.getMethod() === 'HEAD' && res.getStatus() === 200) {
          resumedFrom = parseInt(res.getHeader('Upload-Offset'), 10);
          r.li.setAttribute('data-resumed-at', String(resumedFrom));
        }
      },
      onShouldRetry: function (err) {
        var s = err.originalResponse ? err.originalResponse.getStatus() : 0;
        r.status.textContent = 'Connection lost; trying again…';
        // 4xx answers (signed out, refused) will not get better by retrying.
        return !(s >= 400 && s < 500 && s !== 409 && s !== 423 && s !== 429);
      },
      onProgress: function (sent, total) {
        var pct = total ? Math.floor(sent * 100 / total) : 100;
        r.bar.value = pct;
        var msg = pct + '% of ' + total + ' bytes';
        if (resumedFrom >= 0) { msg += ' (resumed at ' + resumedFrom + ' bytes)'; }
        r.status.textContent = msg;
      },
      onError: function (err) {
        var msg = err.originalResponse ? err.originalResponse.getBody() : err.message;
        r.status.textContent = 'Failed: ' + (msg || 'the upload did not complete');
        r.li.setAttribute('data-state', 'failed');
      },
      onSuccess: function () {
        r.bar.value = 100;
        var msg = 'Done: ' + file.name + ' is in your Arrivals.';
        if (resumedFrom > 0) { msg += ' (The transfer resumed at ' + resumedFrom + ' bytes.)'; }
        r.status.textContent = msg;
        r.li.setAttribute('data-state', 'done');
        refreshList();
      }
    });
    upload.findPreviousUploads().then(function (previous) {
      if (previous.length > 0) {
        upload.resumeFromPreviousUpload(previous[0]);
      }
      upload.start();
    });
  }

  // refreshList shows the new arrival in the list below without reloading the page (which
  // would clear the progress of other uploads).
  function refreshList() {
    fetch(location.pathname, { credentials: 'same-origin' }).then(function (res) {
      return res.ok ? res.text() : null;
    }).then(function (html) {
      if (!html) { return; }
      var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('arrivals-section');
      var cur = document.getElementById('arrivals-section');
      if (fresh && cur) { cur.replaceWith(fresh); }
    }).catch(function () {});
  }

  input.addEventListener('change', function () {
    for (var i = 0; i < input.files.length; i++) { start(input.files[i]); }
    input.value = '';
  });
}());
