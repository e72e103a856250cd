package emailcheck

// builtinDisposable is the fallback used when no list file is given: widely
// used throwaway-mail services, each of which is also on the upstream
// disposable-email-domains list (checked against npm
// disposable-email-domains-js@1.26.0). Forwarding services that the upstream
// list deliberately allows (33mail, spamgourmet, ...) are not here.
var builtinDisposable = []string{
	"mailinator.com", "guerrillamail.com", "guerrillamail.net", "guerrillamail.org",
	"guerrillamail.biz", "guerrillamail.de", "guerrillamailblock.com",
	"sharklasers.com", "grr.la", "pokemail.net", "spam4.me", "10minutemail.com",
	"10minutemail.net", "10minutemail.co.uk", "temp-mail.org", "tempmailo.com",
	"tempr.email", "throwawaymail.com", "yopmail.com", "yopmail.net",
	"yopmail.fr", "jetable.org", "trashmail.com", "trashmail.net",
	"trashmail.de", "mailnesia.com", "maildrop.cc", "dispostable.com",
	"getnada.com", "nada.email", "getairmail.com", "mohmal.com", "emailondeck.com",
	"fakeinbox.com", "mintemail.com", "mytemp.email", "mailcatch.com",
	"inboxkitten.com", "moakt.com", "tempinbox.com", "spambox.us",
	"mailpoof.com", "discard.email", "discardmail.com", "emailfake.com",
	"fakemail.net", "harakirimail.com", "mvrht.com", "mailtemp.info",
	"tmpmail.org", "tmpmail.net", "20minutemail.com", "minuteinbox.com",
	"mail.tm", "emltmp.com", "tmail.ws", "dropmail.me", "1secmail.com",
	"1secmail.org", "1secmail.net", "trbvm.com", "wegwerfmail.de",
	"einrot.com", "byom.de", "mailinator.net", "mailinator2.com",
	"sogetthis.com", "spamherelots.com", "anonbox.net",
}

// BuiltinDisposable returns a copy of the built-in fallback list.
func BuiltinDisposable() []string {
	return append([]string(nil), builtinDisposable...)
}
