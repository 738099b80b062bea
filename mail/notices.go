package mail

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"dsh/metrics"
)

// NoticeKind names what a notice tells. The token service's event kinds are the same
// strings, so the daemon converts one to the other.
type NoticeKind string

// The notices.
const (
	NoticeLockout       NoticeKind = "lockout"
	NoticeICE           NoticeKind = "ice"
	NoticeTokenAdded    NoticeKind = "token-added"
	NoticeTokenRevoked  NoticeKind = "token-revoked"
	NoticePIN           NoticeKind = "pin"
	NoticePassword      NoticeKind = "password"
	NoticeQuestions     NoticeKind = "questions"
	NoticeHardwareAdded NoticeKind = "hardware-added"
	NoticeHardwareTaken NoticeKind = "hardware-taken"
	NoticeShareAdded    NoticeKind = "share-added"
	NoticeShareRemoved  NoticeKind = "share-removed"
	// The airlock's: a request waits for a reviewer; a requester's request was approved,
	// rejected or revoked. They name the request and its project, never its files.
	NoticeEgressReview   NoticeKind = "egress-review"
	NoticeEgressApproved NoticeKind = "egress-approved"
	NoticeEgressRejected NoticeKind = "egress-rejected"
	NoticeEgressRevoked  NoticeKind = "egress-revoked"
)

// Notice is a change of an account that its owner is told about.
type Notice struct {
	Kind   NoticeKind
	User   string
	Object string // a token ID or serial, a share's name
	Detail string // a share membership's mode
	Until  time.Time
	Via    string
	At     time.Time
}

// Composer writes dsh's messages.
type Composer struct {
	// Service names the haven in subjects; empty means "DSH".
	Service string
	// PortalURL is the portal's address as users reach it (e.g. https://dsh.example.ac.uk/),
	// for the links in messages; empty leaves links out.
	PortalURL string
}

func (c Composer) service() string {
	if c.Service == "" {
		return "DSH"
	}
	return c.Service
}

func when(t time.Time) string { return t.UTC().Format("Mon 2 Jan 2006 15:04 UTC") }

// footer ends every message: what it never contains, so a user can tell a forgery.
func (c Composer) footer() string {
	return "\n-- \nThis message was sent by the " + c.service() + " Data Safe Haven. It never contains your password, PIN or\n" +
		"token secret, and nobody from the haven will ever ask you for them.\n"
}

func (c Composer) link(path string) string {
	if c.PortalURL == "" {
		return ""
	}
	u, err := url.Parse(c.PortalURL)
	if err != nil {
		return ""
	}
	return u.JoinPath(path).String()
}

// Notice writes the message of n to address to; ok is false for a kind it does not know.
func (c Composer) Notice(to string, n Notice) (Message, bool) {
	var subject, what string
	notYou := "If this was not you, tell the service desk at once."
	switch n.Kind {
	case NoticeLockout:
		subject = "Your account is locked"
		what = fmt.Sprintf("Your account was locked after too many failed logins, until %s.\n"+
			"If these were not your attempts, someone may be guessing your password: tell the service desk.", when(n.Until))
		notYou = ""
	case NoticeICE:
		subject = "An emergency (ICE) code was issued"
		what = fmt.Sprintf("An emergency code to log in without your token was issued for your account; it is valid once,\nuntil %s.", when(n.Until))
	case NoticeTokenAdded:
		subject = "A new soft token on your account"
		what = fmt.Sprintf("A new soft token (%s) was added to your account.", n.Object)
	case NoticeTokenRevoked:
		subject = "A token was revoked"
		what = fmt.Sprintf("Token %s was revoked: its codes no longer work.", n.Object)
	case NoticePIN:
		subject = "A token has a new PIN"
		what = fmt.Sprintf("Token %s has a new PIN.", n.Object)
	case NoticePassword:
		subject = "Your password was changed"
		what = "Your password was changed."
	case NoticeQuestions:
		subject = "Your security questions were changed"
		what = "Your security questions (for emergency codes) were replaced."
	case NoticeHardwareAdded:
		subject = "A hardware token was assigned to you"
		what = fmt.Sprintf("The hardware token with serial %s is now yours. Before it works, set its PIN:\n"+
			"  dsh token set-pin %s   (after dsh login), or on the portal's Security & Tokens page", n.Object, n.Object)
		if l := c.link("security"); l != "" {
			what += ":\n  " + l
		}
		notYou = "If you did not ask for a hardware token, tell the service desk."
	case NoticeHardwareTaken:
		subject = "A hardware token was taken back"
		what = fmt.Sprintf("The hardware token with serial %s is no longer assigned to you; its codes no longer work.", n.Object)
		notYou = ""
	case NoticeShareAdded:
		subject = "You were added to share " + n.Object
		what = fmt.Sprintf("You are now a %s member of the share %s; it appears on your S: drive at your next login.", n.Detail, n.Object)
		notYou = "If you did not expect this, tell the project's IAO or the service desk."
	case NoticeShareRemoved:
		subject = "You were removed from share " + n.Object
		what = fmt.Sprintf("You are no longer a member of the share %s; your access ended at once.", n.Object)
		notYou = ""
	case NoticeEgressReview:
		subject = "An egress request waits for your review"
		what = fmt.Sprintf("Egress request %s of project %s waits for your review:\n  dsh egress show %s", n.Object, n.Detail, n.Object)
		if l := c.link("egress"); l != "" {
			what += "\nor the portal's Applications & Data page:\n  " + l
		}
		notYou = ""
	case NoticeEgressApproved:
		subject = "Your egress request was approved"
		what = fmt.Sprintf("Your egress request %s was approved. You may download the approved files until %s:\n  dsh egress download %s", n.Object, when(n.Until), n.Object)
		if l := c.link("egress"); l != "" {
			what += "\nor from the portal's Applications & Data page:\n  " + l
		}
		notYou = ""
	case NoticeEgressRejected:
		subject = "Your egress request was rejected"
		what = fmt.Sprintf("Your egress request %s was rejected; dsh egress show %s says why.", n.Object, n.Object)
		notYou = ""
	case NoticeEgressRevoked:
		subject = "The approval of your egress request was revoked"
		what = fmt.Sprintf("The approval of your egress request %s was revoked: its files can no longer be downloaded.", n.Object)
		notYou = ""
	default:
		return Message{}, false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\n%s\n\n", n.User, what)
	fmt.Fprintf(&b, "When: %s\n", when(n.At))
	if n.Via != "" {
		fmt.Fprintf(&b, "From: %s\n", n.Via)
	}
	if notYou != "" {
		fmt.Fprintf(&b, "\n%s\n", notYou)
	}
	b.WriteString(c.footer())
	return Message{To: to, Subject: c.service() + " - " + subject, Body: b.String(), Kind: metrics.MailNotice, User: n.User}, true
}

// Enrolment writes the message with a new account's one-time enrolment code: the one
// code a message may carry, as the operator would otherwise hand it over.
func (c Composer) Enrolment(to, user, code string, expires time.Time) Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\nan account on the %s Data Safe Haven was created for you. To set your password,\n", user, c.service())
	b.WriteString("security questions and first token, log in to a haven desktop as yourself and run\n\n")
	fmt.Fprintf(&b, "  dsh enroll --code %s --questions-file FILE\n\n", code)
	fmt.Fprintf(&b, "The code works once, until %s. FILE holds three lines \"question<TAB>answer\".\n", when(expires))
	b.WriteString("If you did not expect an account, tell the service desk.\n")
	b.WriteString(c.footer())
	return Message{To: to, Subject: c.service() + " - Your enrolment code", Body: b.String(), Kind: metrics.MailEnrolment, User: user}
}

// TokenLink writes the message that delivers a soft token (the service page's "Your Token
// (MobileID)"): a one-time link to the portal page that shows the token's QR code once the
// user has signed in there with their password and chosen its PIN. The token itself is
// made only then, and never travels by e-mail.
func (c Composer) TokenLink(to, user, code string, expires time.Time) Message {
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s,\n\na soft token for your authenticator app (MobileID, Google Authenticator, ...) is waiting for you.\n", user)
	if l := c.link("claim"); l != "" {
		fmt.Fprintf(&b, "Open this link, sign in with your password and choose the new token's PIN:\n\n  %s#user=%s&code=%s\n\n",
			l, url.QueryEscape(user), code)
		fmt.Fprintf(&b, "(or open %s and enter the code %s)\n", l, code)
	} else {
		fmt.Fprintf(&b, "On a haven desktop, run\n\n  dsh token claim --code %s\n\nand give your password and the new token's PIN.\n", code)
	}
	fmt.Fprintf(&b, "\nThe page shows the token's QR code once. The link works once, until %s.\n", when(expires))
	b.WriteString("This message does not contain the token: the link is worth nothing without your password.\n")
	b.WriteString("If you did not ask for a new token, tell the service desk.\n")
	b.WriteString(c.footer())
	return Message{To: to, Subject: c.service() + " - Your Token (MobileID)", Body: b.String(), Kind: metrics.MailTokenLink, User: user}
}

// Test writes the operator's test message.
func (c Composer) Test(to string) Message {
	return Message{To: to, Subject: c.service() + " - Test message",
		Body: "This is a test message from the " + c.service() + " Data Safe Haven: its mail relay works.\n" + c.footer(),
		Kind: metrics.MailTest}
}
