package botlist

import "sync"

// builtinPatterns is the fallback used when the crawler-user-agents file is
// not available: the crawler tokens that account for most bot traffic on
// typical sites (search engines, SEO tools, social/link previewers, AI
// crawlers, archivers and uptime monitors), written as RE2 patterns in the
// list's own style. HTTP client libraries (curl, python-requests, okhttp,
// Go-http-client) are deliberately absent: they are not crawlers and are
// reported by the user-agent layer as http_client_library instead.
var builtinPatterns = []string{
	`Googlebot\/`, `AdsBot-Google`, `Mediapartners-Google`, `Google-InspectionTool`,
	`GoogleOther`, `Storebot-Google`, `APIs-Google`, `FeedFetcher-Google`,
	`bingbot`, `BingPreview`, `msnbot`, `adidxbot`,
	`Slurp`, `DuckDuckBot`, `DuckAssistBot`, `Baiduspider`, `YandexBot`, `YandexImages`,
	`Sogou web spider`, `Exabot`, `SeznamBot`, `MojeekBot`, `PetalBot`, `Qwantify`,
	`Applebot`, `facebookexternalhit`, `facebookcatalog`, `meta-externalagent`,
	`Twitterbot`, `LinkedInBot`, `Slackbot`, `Discordbot`, `TelegramBot`, `WhatsApp\/`,
	`Pinterestbot`, `redditbot`, `Embedly`, `SkypeUriPreview`,
	`AhrefsBot`, `SemrushBot`, `MJ12bot`, `DotBot`, `rogerbot`, `BLEXBot`, `DataForSeoBot`,
	`Screaming Frog SEO Spider`, `serpstatbot`, `SeekportBot`, `Barkrowler`,
	`GPTBot`, `ChatGPT-User`, `OAI-SearchBot`, `ClaudeBot`, `Claude-Web`, `anthropic-ai`,
	`PerplexityBot`, `CCBot`, `Bytespider`, `Amazonbot`, `cohere-ai`, `Diffbot`,
	`ia_archiver`, `archive\.org_bot`, `UptimeRobot`, `Pingdom`, `StatusCake`,
	`HeadlessChrome`, `PhantomJS`,
}

var (
	builtinOnce sync.Once
	builtin     *List
)

// Builtin returns the small built-in list (compiled once).
func Builtin() *List {
	builtinOnce.Do(func() {
		entries := make([]Entry, len(builtinPatterns))
		for i, p := range builtinPatterns {
			entries[i] = Entry{Pattern: p, Tags: []string{"builtin"}}
		}
		l, err := Compile(entries)
		if err != nil {
			panic(err)
		}
		builtin = l
	})
	return builtin
}
