// The one-time link carries the user ID and the link's code in the fragment (#user=..&code=..),
// which browsers never send to a server: copy them into the form, then drop them from the
// address bar and the history.
(function () {
  var h = window.location.hash;
  if (!h || h.length < 2) { return; }
  var p = new URLSearchParams(h.slice(1));
  var user = document.getElementById('claim-user');
  var code = document.getElementById('claim-code');
  if (user && p.get('user') && !user.value) { user.value = p.get('user'); }
  if (code && p.get('code')) { code.value = p.get('code'); }
  history.replaceState(null, '', window.location.pathname);
  var pw = document.getElementById('claim-password');
  if (pw && user && user.value && code && code.value) { pw.focus(); }
})();
