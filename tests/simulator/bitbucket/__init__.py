"""The Bitbucket Cloud simulator and the Bitbucket REST client against it."""
