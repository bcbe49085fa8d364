"""The only code in the bot that speaks Bitbucket Cloud: webhook verify + parse, normalize, the action runner."""
